"""Every engine side by side on models of the sizes users deploy: bare, per shape, in one run.

    .venv/bin/python -m benchmarks.studies.engines --sizes medium nano --rounds 5
    .venv/bin/python -m benchmarks.studies.engines --sizes medium --shapes 4x16 8x16 16x16 --output engines_batches

For each size (benchmarks.sizes: PaddleNLP's own configuration, random weights) the model is
built once per engine with `builder build` (paddle, onnxruntime, openvino; onnxruntime and
openvino INT8, their calibration gate off: random weights make no confident decisions), and each
build's model step runs bare (benchmarks.bare.BareEngine: the program, runtime, threads and feeds
the model step serves) on one text of 16 tokens and on 32 texts of 128 tokens. The rounds
alternate the engines, so a burst of other load on the machine hits all of them. Prints and
writes (results/engines.json, results/engines.md) p50 and texts/s per engine and shape, and the
ratio to Paddle Inference; INT8 rows also give their label agreement with FP32 on those texts.
`--shapes BxT ...` measures other shapes (B texts of T tokens), e.g. the batch sizes a server
forms (16 closed-loop clients make batches of about 8), into `--output`'s files.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.workloads import parse_shape

SHAPES = {"1 x 16": (1, "明天早上七点提醒我给妈妈打"), "32 x 128": (32, "导航到北京西站然后播放周杰伦的歌" * 12)}
ENGINES = {"paddle": {"runtime": "paddle"}, "onnxruntime": {"runtime": "onnxruntime"},
           "openvino": {"runtime": "openvino"}, "onnxruntime_int8": {"runtime": "onnxruntime", "quantize": "int8"},
           "openvino_int8": {"runtime": "openvino", "quantize": "int8"},
           # ONNX Runtime's INT8 choices, by name (--engines): per-channel weight scales, INT8 embedding tables
           "onnxruntime_int8_per_channel": {"runtime": "onnxruntime", "quantize": "int8", "per_channel": True},
           "onnxruntime_int8_embeddings": {"runtime": "onnxruntime", "quantize": "int8", "embeddings": True}}
DEFAULT_ENGINES = ["paddle", "onnxruntime", "openvino", "onnxruntime_int8", "openvino_int8"]
RESULTS = Path(__file__).resolve().parents[1] / "results"


def build_engines(model: Path, repository: Path, threads: int, names: list[str] = DEFAULT_ENGINES) -> dict:
    from builder.build import build
    from builder.engine.quantize import QuantizeOptions
    from builder.options import BuildOptions
    from serving_core.interface import Task
    from serving_core.runtime import RuntimeKind

    from ..bare import BareEngine

    engines = {}
    for name in names:
        settings = ENGINES[name]
        if not (repository / name / "build.json").is_file():
            measuring = QuantizeOptions(min_agreement=0.0, per_channel=settings.get("per_channel", False),
                                        embeddings=settings.get("embeddings", False))
            build(model, repository, BuildOptions(
                task=Task.SEQ_CLS, name=name, runtime=RuntimeKind(settings["runtime"]), num_threads=threads,
                quantize=settings.get("quantize"), quantize_options=measuring, overwrite=True), show_progress=False)
        engines[name] = BareEngine(repository, name, Task.SEQ_CLS, threads)
    return engines


def measure(engines: dict, rounds: int, runs: int, shapes: dict = SHAPES) -> dict:
    """{shape: {engine: [seconds]}}, the engines alternating round by round; runs per round scale
    down with a shape's tokens (a tenth of `runs` for 32 x 128)."""
    feeds = {shape: {name: engine.feeds([(text,)] * count) for name, engine in engines.items()}
             for shape, (count, text) in shapes.items()}
    seconds = {shape: {name: [] for name in engines} for shape in shapes}
    for shape, (count, text) in shapes.items():
        repeats = max(runs // 10, 1, min(runs, round(runs * 64 / (count * (len(text) + 2)))))
        for name, engine in engines.items():
            engine.run(feeds[shape][name])  # warm-up
        for _ in range(rounds):
            for name, engine in engines.items():
                for _ in range(repeats):
                    started = time.perf_counter()
                    engine.run(feeds[shape][name])
                    seconds[shape][name].append(time.perf_counter() - started)
    return seconds


def int8_agreement(engines: dict) -> dict[str, float]:
    """Label agreement of each INT8 engine with its FP32 engine on the long shape's texts (random
    weights: a weak check, reported, not gated)."""
    count, text = SHAPES["32 x 128"]
    texts = [(f"{i} {text}",) for i in range(count)]
    return {name: float(np.mean(engines[name].labels(texts) == engines[ENGINES[name]["runtime"]].labels(texts)))
            for name in engines if ENGINES[name].get("quantize") and ENGINES[name]["runtime"] in engines}


def calibration_diffs(repository: Path, names) -> dict[str, float]:
    """Each INT8 build's largest probability difference from FP32 on its calibration texts (build.json)."""
    diffs = {}
    for name in names:
        calibration = json.loads((repository / name / "build.json").read_text(encoding="utf-8")).get("calibration")
        if calibration:
            diffs[name] = calibration["max_probability_diff"]
    return diffs


def report(size: str, seconds: dict, agreement: dict, shapes: dict = SHAPES, diffs: dict | None = None) -> list[dict]:
    rows = []
    for shape, per_engine in seconds.items():
        count = shapes[shape][0]
        base = float(np.median(per_engine["paddle"])) if "paddle" in per_engine else float("nan")
        for name, values in per_engine.items():
            p50 = float(np.median(values))
            rows.append({"size": size, "shape": shape, "engine": name, "p50_ms": round(1000 * p50, 2),
                         "texts_per_s": round(count / p50, 1), "x_paddle": round(base / p50, 2),
                         "p90_ms": round(1000 * float(np.percentile(values, 90)), 2), "runs": len(values),
                         "int8_agreement": agreement.get(name), "int8_max_probability_diff": (diffs or {}).get(name)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| size | shape | engine | p50 ms | p90 ms | texts/s | x paddle | INT8 label agreement | "
             "INT8 max probability diff (calibration) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        agreement = "" if r["int8_agreement"] is None else f"{r['int8_agreement']:.2f}"
        diff = "" if r.get("int8_max_probability_diff") is None else f"{r['int8_max_probability_diff']:.4f}"
        lines.append(f"| {r['size']} | {r['shape']} | {r['engine']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
                     f"{r['texts_per_s']:.0f} | {r['x_paddle']:.2f} | {agreement} | {diff} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["medium", "nano"], choices=["medium", "nano", "base",
                                                                                    "tinybert"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20, help="1 x 16 runs per engine and round (32 x 128: a tenth)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="demo/engines")
    parser.add_argument("--engines", nargs="+", default=DEFAULT_ENGINES, choices=list(ENGINES),
                        help="which builds to compare (default: %(default)s)")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, help="TEXTSxTOKENS each (default: 1x16 32x128)")
    parser.add_argument("--output", default="engines", help="results/OUTPUT.json and .md (default: %(default)s)")
    args = parser.parse_args()
    shapes = dict(args.shapes) if args.shapes else SHAPES

    from builder.quiet import quiet_frameworks

    from ..sizes import ensure_model

    quiet_frameworks()
    rows = []
    for size in args.sizes:
        work = Path(args.workdir) / size
        engines = build_engines(ensure_model(size, work / "model"), work / "repository", args.threads, args.engines)
        rows += report(size, measure(engines, args.rounds, args.runs, shapes), int8_agreement(engines), shapes,
                       calibration_diffs(work / "repository", engines))
        del engines
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n")
    table = markdown(rows)
    title = "# Engines side by side (`python -m benchmarks.studies.engines`)"
    (RESULTS / f"{args.output}.md").write_text(f"{title}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
