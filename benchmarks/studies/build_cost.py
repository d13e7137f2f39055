"""What a build costs, by model size and flags: wall time and peak memory of `builder build`.

    .venv/bin/python -m benchmarks.studies.build_cost --sizes nano medium base xbase
    .venv/bin/python -m benchmarks.studies.build_cost --sizes medium --flags auto int8 --output medium_only

Each model is made once from PaddleNLP's own configuration (benchmarks.sizes: random weights,
nothing downloaded). Each build runs as its own `builder build` process, nothing else of ours
running; its process tree's resident memory is read every 0.1 s: `peak` is the most the tree held
at once (the sum over its processes: shared library pages count once per process, so a bound),
`largest` the most one process held (what `/usr/bin/time -v` reports). The build's own phase
record (build.json `build_cost`) says where the time went. INT8 builds gate at 90% agreement with
FP32 (random weights make few confident decisions). Writes results/<output>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
INT8_GATE = ["--min-agreement", "0.9"]  # random weights make few confident decisions: a looser gate
FLAGS = {"auto": [], "paddle": ["--runtime", "paddle"], "onnxruntime": ["--runtime", "onnxruntime"],
         "openvino": ["--runtime", "openvino"], "int8": ["--quantize", "int8", *INT8_GATE],
         "onnxruntime-int8": ["--runtime", "onnxruntime", "--quantize", "int8", *INT8_GATE],
         "openvino-int8": ["--runtime", "openvino", "--quantize", "int8", *INT8_GATE]}
SAMPLE_S = 0.1


def weights_mb(model_dir: Path) -> float:
    return sum(p.stat().st_size for p in model_dir.iterdir() if p.name.startswith("model")
               and p.suffix in (".pdparams", ".safetensors")) / 2**20


def measure_build(model_dir: Path, output: Path, flags: list[str]) -> dict:
    """One `builder build`: wall seconds, peak and largest-process RSS (MB), the build's phases."""
    import psutil

    command = [sys.executable, "-m", "builder", "build", "--task", "seq_cls", "--model", str(model_dir),
               "--output", str(output), *flags]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        root, peak, largest = psutil.Process(child.pid), 0, 0
        while child.poll() is None:
            sizes = []
            for process in [root, *_children(root)]:
                try:
                    sizes.append(process.memory_info().rss)
                except psutil.Error:
                    pass
            peak, largest = max(peak, sum(sizes)), max(largest, max(sizes, default=0))
            time.sleep(SAMPLE_S)
        seconds = time.perf_counter() - started
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{text[-3000:]}")
    summary = json.loads(text.strip().splitlines()[-1])
    record = json.loads((output / summary["ensemble"] / "build.json").read_text(encoding="utf-8"))
    return {"seconds": round(seconds, 1), "peak_mb": round(peak / 2**20), "largest_mb": round(largest / 2**20),
            "runtime": summary["runtime"], "phases": record.get("build_cost")}


def _children(process):
    import psutil

    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def made_model(size: str, directory: Path) -> Path:
    """benchmarks.sizes.ensure_model in a child process (the model's memory goes with it)."""
    subprocess.run([sys.executable, "-m", "benchmarks.sizes", size, str(directory)], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[2])
    return directory


def table(rows: list[dict]) -> str:
    lines = ["| model (weights) | build | runtime chosen | time | peak memory | x weights | largest process |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['size']} ({row['weights_mb']:.0f} MB) | {row['flags']} | {row['runtime']} | "
                     f"{row['seconds']:.0f} s | {row['peak_mb'] / 1024:.2f} GB | "
                     f"{row['peak_mb'] / row['weights_mb']:.1f} | {row['largest_mb'] / 1024:.2f} GB |")
    return "\n".join(lines)


def phase_table(rows: list[dict]) -> str:
    """Seconds per phase, one column per build."""
    names = []
    for row in rows:
        for phase in (row["phases"] or {}).get("phases", []):
            if phase["name"] not in names:
                names.append(phase["name"])
    header = "| phase | " + " | ".join(f"{r['size']} {r['flags']}" for r in rows) + " |"
    lines = [header, "|---|" + "---|" * len(rows)]
    for name in names:
        cells = []
        for row in rows:
            found = [p for p in (row["phases"] or {}).get("phases", []) if p["name"] == name]
            cells.append(f"{found[0]['seconds']:.1f} s / {found[0]['peak_mb']} MB" if found else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["nano", "medium", "base", "xbase"],
                        choices=["nano", "medium", "base", "xbase", "tinybert"])
    parser.add_argument("--flags", nargs="+", default=list(FLAGS), choices=list(FLAGS))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ernie-build-cost",
                        help="where the models are made (kept between runs)")
    parser.add_argument("--output", default="build_cost", help="results/<output>.{json,md}")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    rows = []
    plan = [(size, flags) for size in args.sizes for flags in args.flags]
    for size, flags in tqdm(plan, desc="builds", unit="build"):
        model = made_model(size, args.work / size)
        with tempfile.TemporaryDirectory(prefix="ernie-build-cost-") as out:
            result = measure_build(model, Path(out) / "repo", FLAGS[flags])
        rows.append({"size": size, "flags": flags, "weights_mb": round(weights_mb(model), 1), **result})
        tqdm.write(table(rows[-1:]).splitlines()[-1])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (RESULTS / f"{args.output}.md").write_text(
        f"# Build cost\n\n`python -m benchmarks.studies.build_cost --sizes {' '.join(args.sizes)} --flags "
        f"{' '.join(args.flags)}`\n\n{table(rows)}\n\n## Seconds and peak memory per phase\n\n{phase_table(rows)}\n",
        encoding="utf-8")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
