"""The benchmark's outputs: results.json, report.md (ratios to the bare engine, the targets,
where the time goes in the ensemble) and plot.png (throughput vs p99 latency per system).

    python -m benchmarks.report RESULTS_DIR     # render report.md and plot.png again from results.json
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .floor import c1_floor_ratio, c16_ceiling
from .systems import BARE, DIRECT, FLOOR, PADDLE_SERVING, SERVED_BY_TRITON, SIMPLE_SERVER, TRITON


@dataclass
class Row:
    workload: str
    system: str
    kind: str
    runtime: str
    concurrency: int
    measurement: dict
    ratio_to_bare: float = 0.0  # throughput over the same runtime's bare engine at the same concurrency
    # The same, with the load generator's share of the machine left to it: served / (bare x (1 - share)).
    held_ratio: float = 0.0
    perf_analyzer: dict = field(default_factory=dict)  # Triton: benchmarks.perf_analyzer's figures at this point
    round_texts_per_s: list = field(default_factory=list)  # every round's throughput (the row is the median's)


@dataclass
class Report:
    settings: dict
    machine: dict
    workloads: dict
    rows: list[Row] = field(default_factory=list)
    tokenizer: list[dict] = field(default_factory=list)
    targets: list[dict] = field(default_factory=list)

    def find(self, workload: str, system: str, concurrency: int) -> Row | None:
        for row in self.rows:
            if (row.workload, row.system, row.concurrency) == (workload, system, concurrency):
                return row
        return None

    def floor(self, workload: str, concurrency: int, runtime: str) -> Row | None:
        """The floor row at this point: the runtime's own, else any (the floor runs no engine)."""
        rows = [r for r in self.rows if (r.workload, r.kind, r.concurrency) == (workload, FLOOR, concurrency)]
        return next((r for r in rows if r.runtime == runtime), rows[0] if rows else None)

    def fill_ratios(self) -> None:
        for row in self.rows:
            if row.kind == FLOOR:  # no engine: nothing to compare with the bare engine
                continue
            bare = self.find(row.workload, f"{BARE}_{row.runtime}", row.concurrency)
            if bare and bare.measurement["texts_per_s"]:
                row.ratio_to_bare = row.measurement["texts_per_s"] / bare.measurement["texts_per_s"]
                row.held_ratio = held_ratio(row.measurement["texts_per_s"], bare.measurement["texts_per_s"],
                                            row.measurement.get("client_cpu_cores", 0.0), self.machine["cpus"])
                if row.perf_analyzer:
                    row.perf_analyzer["held_ratio"] = held_ratio(
                        row.perf_analyzer["texts_per_s"], bare.measurement["texts_per_s"],
                        row.perf_analyzer["client_cpu_cores"], self.machine["cpus"])


def held_ratio(served: float, bare: float, client_cores: float, cpus: int) -> float:
    """Served throughput over what the bare engine would do on the CPU the load generator leaves."""
    return served / (bare * max(1.0 - client_cores / cpus, 1e-6))


FP32_RUNTIMES, INT8_RUNTIMES = ("paddle", "onnxruntime", "openvino"), ("int8", "ovint8", "qat")


def evaluate_targets(report: Report) -> list[dict]:
    """The open issues' targets, from this run's rows; a target with missing rows is skipped."""
    targets = []

    def add(name, value, goal, passed, detail):
        targets.append({"target": name, "value": value, "goal": goal, "passed": bool(passed), "detail": detail})

    def texts_per_s(workload, system, concurrency):
        row = report.find(workload, system, concurrency)
        return row.measurement["texts_per_s"] if row else 0.0

    for workload in [w for w in ("seq_cls_short", "seq_cls_long") if w in report.workloads]:
        for kind, runtime in itertools.product((TRITON, DIRECT), (*FP32_RUNTIMES, *INT8_RUNTIMES, "auto")):
            served = report.find(workload, f"{kind}_{runtime}", 16)
            bare = report.find(workload, f"{BARE}_{runtime}", 16)
            if served and bare:
                add(f"served/bare at c16, load generator's share left out ({kind}_{runtime}, {workload})",
                    served.held_ratio,
                    ">= 0.90", served.held_ratio >= 0.90,
                    f"{served.measurement['texts_per_s']:.1f} vs {bare.measurement['texts_per_s']:.1f} texts/s, "
                    f"client {served.measurement.get('client_cpu_cores', 0.0):.2f} cores"
                    + (f"; perf_analyzer {served.perf_analyzer['texts_per_s']:.1f}/s = "
                       f"{served.perf_analyzer.get('held_ratio', 0.0):.2f}" if served.perf_analyzer else "")
                    + _c16_floor_detail(report.floor(workload, 16, runtime), bare))
            served = report.find(workload, f"{kind}_{runtime}", 1)
            bare = report.find(workload, f"{BARE}_{runtime}", 1)
            if served and bare and workload == "seq_cls_short":
                ratio = served.measurement["p50_ms"] / bare.measurement["p50_ms"]
                add(f"one 16-token request p50 / bare ({kind}_{runtime})", ratio, "<= 1.15", ratio <= 1.15,
                    f"{served.measurement['p50_ms']:.2f} vs {bare.measurement['p50_ms']:.2f} ms"
                    + (f"; perf_analyzer {served.perf_analyzer['p50_ms']:.2f} ms" if served.perf_analyzer else "")
                    + _c1_floor_detail(report.floor(workload, 1, runtime), bare))
        paddle_serving = report.find(workload, f"{PADDLE_SERVING}_paddle", 16)
        if paddle_serving and paddle_serving.ratio_to_bare:
            add(f"Paddle Serving / bare at c16, load generator's share left out ({workload})",
                paddle_serving.held_ratio, ">= 0.80", paddle_serving.held_ratio >= 0.80,
                f"{paddle_serving.measurement['texts_per_s']:.1f} texts/s")
    _engine_choice_targets(report, add, texts_per_s)
    for runtime in ("paddle", "onnxruntime", "int8"):
        for workload in report.workloads:
            ours = report.find(workload, f"{TRITON}_{runtime}", 16)
            theirs = report.find(workload, f"{SIMPLE_SERVER}_paddle", 16)
            if ours and theirs and theirs.measurement["texts_per_s"]:
                throughput = ours.measurement["texts_per_s"] / theirs.measurement["texts_per_s"]
                p99 = ours.measurement["p99_ms"] / theirs.measurement["p99_ms"]
                add(f"Triton ({runtime}) / SimpleServer at c16, {workload}", throughput,
                    ">= 3x throughput and <= 1/3 p99", throughput >= 3 and p99 <= 1 / 3,
                    f"throughput x{throughput:.2f}, p99 x{p99:.2f}")
    if report.tokenizer:
        identical = all(t["identical_ids"] for t in report.tokenizer)
        add("tokenizer ids identical to PaddleNLP's", float(identical), "identical", identical,
            ", ".join(f"{t['texts']}: x{t['speedup']:.1f} faster" for t in report.tokenizer))
    for workload in report.workloads:
        row = report.find(workload, f"{TRITON}_paddle", 1)
        steps = row.measurement.get("steps", {}) if row else {}
        tokenizer, ensemble = steps.get("tokenizer"), steps.get("ensemble")
        if tokenizer and ensemble and ensemble["success"]:
            share = tokenizer["compute_infer"] / ensemble["success"]
            add(f"tokenizer share of served time, {workload}", share, "< 3%", share < 0.03,
                f"{tokenizer['compute_infer']:.3f} of {ensemble['success']:.2f} ms (c1)")
    return targets


def _c1_floor_detail(floor: Row | None, bare: Row) -> str:
    """What the floor leaves possible for one request: (bare + floor p50) / bare, per load generator."""
    if floor is None:
        return ""
    bare_ms = bare.measurement["p50_ms"]
    detail = (f"; {floor.system} {floor.measurement['p50_ms']:.2f} ms, so at best "
              f"{c1_floor_ratio(bare_ms, floor.measurement['p50_ms']):.2f}")
    if floor.perf_analyzer:
        detail += f" (perf_analyzer {c1_floor_ratio(bare_ms, floor.perf_analyzer['p50_ms']):.2f})"
    return detail


def _c16_floor_detail(floor: Row | None, bare: Row) -> str:
    """What the floor leaves possible at c16: the engine's and the server's CPU per text, E / (E + S)."""
    if floor is None or not floor.measurement["texts_per_s"]:
        return ""
    server_ms = floor.measurement["cpu_cores"] / floor.measurement["texts_per_s"] * 1000
    return (f"; {floor.system} {server_ms:.2f} CPU-ms a text, so at most "
            f"{c16_ceiling(bare.measurement, floor.measurement):.2f}")


def _engine_choice_targets(report: Report, add, texts_per_s) -> None:
    """Issue 22's: a build with no flags (auto) against --runtime paddle and the best FP32 build
    (each entry kind against its own kind), and the best INT8 build served against the bare FP32
    Paddle engine, on the short workload."""
    workload = "seq_cls_short"
    for kind in (TRITON, DIRECT):
        auto, paddle = report.find(workload, f"{kind}_auto", 1), report.find(workload, f"{kind}_paddle", 1)
        if auto and paddle:
            ratio = auto.measurement["p50_ms"] / paddle.measurement["p50_ms"]
            add(f"no-flag build p50 / --runtime paddle p50, one 16-token text ({kind})", ratio, "<= 0.70",
                ratio <= 0.70, f"{auto.measurement['p50_ms']:.2f} vs {paddle.measurement['p50_ms']:.2f} ms")
        best_fp32 = max((texts_per_s(workload, f"{kind}_{r}", 16), r) for r in FP32_RUNTIMES)
        auto_c16 = texts_per_s(workload, f"{kind}_auto", 16)
        if auto_c16 and best_fp32[0]:
            ratio = auto_c16 / best_fp32[0]
            add(f"no-flag build c16 / best FP32 build c16 ({kind})", ratio, ">= 0.95", ratio >= 0.95,
                f"{auto_c16:.1f} vs {best_fp32[0]:.1f} texts/s ({best_fp32[1]})")
    best_int8 = max((texts_per_s(workload, f"{kind}_{r}", 16), f"{kind}_{r}")
                    for kind in (TRITON, DIRECT) for r in INT8_RUNTIMES)
    bare_paddle = texts_per_s(workload, f"{BARE}_paddle", 16)
    if best_int8[0] and bare_paddle:
        ratio = best_int8[0] / bare_paddle
        kernels = report.find(workload, f"{BARE}_paddle", 16).measurement.get("kernels") or "oneDNN"
        by_perf_analyzer = [(row.perf_analyzer["texts_per_s"], row.system)
                            for kind in (TRITON, DIRECT) for r in INT8_RUNTIMES
                            if (row := report.find(workload, f"{kind}_{r}", 16)) and row.perf_analyzer]
        best_counted = max(by_perf_analyzer, default=None)
        add("best INT8 build served c16 / bare FP32 Paddle c16", ratio, ">= 3.0", ratio >= 3.0,
            f"{best_int8[0]:.1f} ({best_int8[1]}) vs {bare_paddle:.1f} texts/s (Paddle on its {kernels} kernels, "
            "as its build serves it)"
            + (f"; perf_analyzer {best_counted[0]:.1f}/s ({best_counted[1]}) = {best_counted[0] / bare_paddle:.2f}"
               if best_counted else ""))


CAVEATS = [
    "The load generator runs on the same machine and is shown apart (`client CPU`, cores); the bare engine "
    "has none. `x bare, held` holds the server to the CPU the load generator leaves: served / (bare x "
    "(1 - client CPU / cores)).",
    "At concurrency c the bare engine runs batches of c requests (the batch a perfect server would form), "
    "cut by the model step's token budget as the model step cuts them.",
    "PaddleNLP SimpleServer as shipped: one Paddle math thread (its Predictor takes half the CPUs), "
    "texts one at a time for seq_cls (CustomModelHandler ignores the batch_size the docs' client sends), "
    "and qa on the first 128-token window only (QAModelHandler asks for no overflow windows): "
    "its qa rows do about a fifth of the work ours do.",
    "Rows are texts (qa: questions); throughput is counted over a window from one completion to another.",
    "floor_* rows are the direct model with an instant engine (benchmarks/floor.py): what serving adds to the "
    "engine; they have no ratio to the bare engine, and the targets give the best ratio a server that adds "
    "them can show.",
]


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    aligns = ["---"] + ["---:"] * (len(headers) - 1)
    return ["| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _ratios(row: Row, *ratios: float) -> list[str]:
    return ["-" if row.kind == FLOOR else f"{ratio:.2f}" for ratio in ratios]


def markdown(report: Report) -> str:
    lines = ["# Serving benchmark", "", f"Machine: {report.machine}", "", f"Settings: {report.settings}", ""]
    lines += ["Read with: " + " ".join(CAVEATS), "", "## Targets", ""]
    lines += _table(["target", "value", "goal", "met", "detail"],
                    [[t["target"], f"{t['value']:.3f}", t["goal"], "yes" if t["passed"] else "**no**", t["detail"]]
                     for t in report.targets])
    for workload, description in report.workloads.items():
        lines += ["", f"## {workload}: {description}", ""]
        rows = sorted((r for r in report.rows if r.workload == workload), key=lambda r: (r.concurrency, r.system))
        lines += _table(
            ["c", "system", "texts/s", "p50 ms", "p95 ms", "p99 ms", "RSS MB", "CPU cores", "client CPU", "x bare",
             "x bare, held", "errors"],
            [[str(r.concurrency), r.system, f"{r.measurement['texts_per_s']:.1f}", f"{r.measurement['p50_ms']:.2f}",
              f"{r.measurement['p95_ms']:.2f}", f"{r.measurement['p99_ms']:.2f}", f"{r.measurement['rss_mb']:.0f}",
              f"{r.measurement['cpu_cores']:.2f}", f"{r.measurement.get('client_cpu_cores', 0.0):.2f}",
              *_ratios(r, r.ratio_to_bare, r.held_ratio), str(r.measurement["errors"])]
             for r in rows])
        analyzed = [r for r in rows if r.perf_analyzer]
        if analyzed:
            lines += ["", "Triton's perf_analyzer on the same servers (a second load generator, C++):", ""]
            lines += _table(["c", "system", "texts/s", "p50 ms", "p95 ms", "p99 ms", "client CPU", "x bare, held",
                             "ours texts/s"],
                            [[str(r.concurrency), r.system, f"{r.perf_analyzer['texts_per_s']:.1f}",
                              f"{r.perf_analyzer['p50_ms']:.2f}", f"{r.perf_analyzer['p95_ms']:.2f}",
                              f"{r.perf_analyzer['p99_ms']:.2f}", f"{r.perf_analyzer['client_cpu_cores']:.2f}",
                              *_ratios(r, r.perf_analyzer.get('held_ratio', 0.0)),
                              f"{r.measurement['texts_per_s']:.1f}"]
                             for r in analyzed])
    lines += ["", "## Where the time goes in the Triton ensemble (mean ms per request, c1 and c16)", ""]
    profile_rows = []
    for row in report.rows:
        if row.kind not in SERVED_BY_TRITON or row.concurrency not in (1, 16):
            continue
        for model, step in row.measurement.get("steps", {}).items():
            profile_rows.append([row.workload, row.system, str(row.concurrency), model, f"{step['queue']:.2f}",
                                 f"{step['compute_input']:.2f}", f"{step['compute_infer']:.2f}",
                                 f"{step['compute_output']:.2f}", f"{step['success']:.2f}",
                                 f"{step['mean_batch']:.1f}"])
    lines += _table(["workload", "system", "c", "step", "queue", "input", "infer", "output", "total", "batch"],
                    profile_rows)
    if report.tokenizer:
        lines += ["", "## Tokenizer: ours (Rust) vs PaddleNLP's Python ErnieTokenizer", ""]
        lines += _table(["texts", "batch", "ours ms", "PaddleNLP ms", "speed-up", "identical ids"],
                        [[t["texts"], str(t["batch"]), f"{t['ours_ms']:.2f}", f"{t['paddlenlp_ms']:.2f}",
                          f"{t['speedup']:.1f}", str(t["identical_ids"])] for t in report.tokenizer])
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(report.workloads)
    columns = 2 if len(workloads) > 1 else 1
    grid_rows = (len(workloads) + 1) // 2
    figure, axes = plt.subplots(grid_rows, columns, figsize=(7 * columns, 5 * grid_rows), squeeze=False)
    for axis, workload in zip(axes.flat, workloads):
        rows = [r for r in report.rows if r.workload == workload]
        for system in dict.fromkeys(r.system for r in rows):
            points = sorted((r for r in rows if r.system == system), key=lambda r: r.concurrency)
            x = [r.measurement["p99_ms"] for r in points]
            y = [r.measurement["texts_per_s"] for r in points]
            style = "--" if points[0].kind == BARE else "-"
            axis.plot(x, y, style, marker="o", label=system)
            for r, xi, yi in zip(points, x, y):
                axis.annotate(f"c{r.concurrency}", (xi, yi), fontsize=7, textcoords="offset points", xytext=(3, 3))
        axis.set_xscale("log")
        axis.set_xlabel("p99 latency (ms, log)")
        axis.set_ylabel("throughput (texts/s)")
        axis.set_title(f"{workload}: {report.workloads[workload]}", fontsize=9)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(workloads):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def load(path: Path) -> Report:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    data["rows"] = [Row(**row) for row in data["rows"]]
    return Report(**data)


def write(report: Report, directory: Path, with_json: bool = True) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "results.json", "markdown": directory / "report.md", "plot": directory / "plot.png"}
    if with_json:
        paths["json"].write_text(json.dumps(asdict(report), indent=1, ensure_ascii=False), encoding="utf-8")
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    plot(report, paths["plot"])
    return paths


if __name__ == "__main__":
    import sys

    directory = Path(sys.argv[1])
    loaded = load(directory / "results.json")
    loaded.targets = evaluate_targets(loaded)
    print(write(loaded, directory, with_json=False)["markdown"].read_text(encoding="utf-8"))
