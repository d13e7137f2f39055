"""The compression recipe's INT8 programs against their FP32 model, on every engine that runs each.

    .venv/bin/python -m benchmarks.studies.qat --rounds 5
    .venv/bin/python -m benchmarks.studies.qat --compressed DIR/qat_seq_cls --output qat_medium  # another recipe run

Builds, with `builder build`, the fixture ERNIE 3.0 Tiny's recipe wrote
(tests/fixtures/paddle2/qat_seq_cls, see make_qat_fixture.py): the fine-tuned FP32 model on Paddle
Inference, ONNX Runtime and OpenVINO, and the quantization-aware programs (`int8`, `quant_emb`) on
each engine that can run them (Paddle Inference; OpenVINO reads `int8.pdmodel`, not the INT8
embeddings of `quant_emb`; paddle2onnx converts neither). Each build's model step runs bare
(benchmarks.bare.BareEngine), the builds alternating round by round, at one text of 16 tokens and
16 texts of 32. `--compressed` takes another output of make_qat_fixture.py (the same layout,
with its qat_expected.json beside it). Writes results/qat.json and results/qat.md (`--output`):
p50, texts/s, the ratio to the FP32 model on the same engine and to the fastest FP32 engine, and
each build's label agreement with the FP32 model on the recipe's held-out texts. The fixture is
tiny (2 layers x 64): its times show per-run overheads more than INT8 arithmetic.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .engines import RESULTS, measure
from ..workloads import parse_shape

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "paddle2" / "qat_seq_cls"
BUILDS = {"fp32 paddle": ("fp32", "paddle"), "fp32 onnxruntime": ("fp32", "onnxruntime"),
          "fp32 openvino": ("fp32", "openvino"), "int8 paddle": ("int8", "paddle"),
          "int8 openvino": ("int8", "openvino"), "quant_emb paddle": ("quant_emb", "paddle")}


def build_all(compressed: Path, repository: Path, threads: int) -> dict:
    from builder.build import build
    from builder.options import BuildOptions
    from serving_core.interface import Task
    from serving_core.runtime import RuntimeKind

    from ..bare import BareEngine

    engines = {}
    for label, (program, runtime) in BUILDS.items():
        name = label.replace(" ", "_")
        if not (repository / name / "build.json").is_file():
            source = compressed / "fp32" if program == "fp32" else compressed / "width_mult_0.75"
            extra = {} if program == "fp32" else {"program_file": program, "tokenizer_dir": compressed / "tokenizer"}
            build(source, repository, BuildOptions(task=Task.SEQ_CLS, name=name, runtime=RuntimeKind(runtime),
                                                   num_threads=threads, labels_file=compressed / "labels.txt",
                                                   overwrite=True, **extra), show_progress=False)
        engines[label] = BareEngine(repository, name, Task.SEQ_CLS, threads)
    return engines


def report(seconds: dict, shapes: dict, agreement: dict) -> list[dict]:
    rows = []
    for shape, per_build in seconds.items():
        count = shapes[shape][0]
        p50 = {label: float(np.median(values)) for label, values in per_build.items()}
        best_fp32 = min(v for label, v in p50.items() if label.startswith("fp32"))
        for label, value in p50.items():
            engine = BUILDS[label][1]
            rows.append({"shape": shape, "build": label, "p50_ms": round(1000 * value, 3),
                         "texts_per_s": round(count / value, 1),
                         "x_fp32_same_engine": round(p50[f"fp32 {engine}"] / value, 2),
                         "x_best_fp32": round(best_fp32 / value, 2), "agreement_with_fp32": agreement[label]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| shape | build | p50 ms | texts/s | x FP32, same engine | x fastest FP32 | label agreement with FP32 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['shape']} | {r['build']} | {r['p50_ms']:.3f} | {r['texts_per_s']:.0f} | "
              f"{r['x_fp32_same_engine']:.2f} | {r['x_best_fp32']:.2f} | {r['agreement_with_fp32']:.3f} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compressed", type=Path, default=FIXTURE,
                        help="the recipe's output as make_qat_fixture.py keeps it (default: the test fixture)")
    parser.add_argument("--output", default="qat", help="results/OUTPUT.json and .md (default: qat)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200, help="1 x 16 runs per build and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="where the builds go (default: /tmp/qat_bench/OUTPUT); "
                        "a build already there is reused")
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=[parse_shape("1x16"), parse_shape("16x32")],
                        help="TEXTSxTOKENS each (default: 1x16 16x32; the fixture reads at most 64 tokens)")
    args = parser.parse_args()

    engines = build_all(args.compressed, args.workdir or Path("/tmp/qat_bench") / args.output, args.threads)
    expected = args.compressed.parent / "qat_expected.json"
    dev = [(text,) for text in json.loads(expected.read_text(encoding="utf-8"))["dev"]["texts"]]
    fp32 = engines["fp32 paddle"].labels(dev)
    agreement = {label: float(np.mean(engine.labels(dev) == fp32)) for label, engine in engines.items()}
    shapes = dict(args.shapes)
    rows = report(measure(engines, args.rounds, args.runs, shapes), shapes, agreement)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (RESULTS / f"{args.output}.md").write_text(markdown(rows), encoding="utf-8")
    print(markdown(rows))


if __name__ == "__main__":
    main()
