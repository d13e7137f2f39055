"""seq_cls variants side by side: Paddle FP32, ONNX Runtime FP32 and INT8, width-pruned (0.5)
and pruned + INT8.

    .venv/bin/python -m benchmarks.studies.runtimes --requests 20

One run, same model and texts: each runtime bare (pre-tokenized batches, in process) and
served (its own Triton ensemble, one client), on short commands (batch 32), long texts
(batch 32, about 110 tokens) and single short requests (batch 1). Prints size on disk,
texts/s, p50/p99 and the ratio to Paddle FP32 bare, and each served variant's label
agreement with Paddle FP32 on all texts (the pruned variants are not retrained here, as
DynaBERT would do, so their agreement shows what pruning alone costs).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..common import Result, ensure_example, summarize, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="batches per workload")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="demo")
    args = parser.parse_args()

    from builder.build import build
    from builder.example.prune import prune_example
    from builder.engine.quantize import QuantizeOptions
    from builder.options import BuildOptions
    from builder.quiet import quiet_frameworks
    from builder.triton.repository import model_version_dir
    from builder.serving.triton_server import ServerPorts, TritonServer
    from clients.seq_cls import SeqClsClient
    from serving_core.interface import Task
    from serving_core.program import find_program
    from serving_core.runtime import RuntimeKind

    from ..bare import BareEngine
    from ..workloads import make_texts

    quiet_frameworks()
    work = Path(args.workdir)
    example = ensure_example(work, Task.SEQ_CLS)
    repository = work / "bench_runtimes"
    pruned = prune_example(example, Task.SEQ_CLS, 0.5, work / "seq_cls_width_mult_0.5")
    loose = QuantizeOptions(min_agreement=0.5)  # measuring, not gating
    variants = {"paddle_fp32": {"runtime": RuntimeKind.PADDLE}, "ort_fp32": {"runtime": RuntimeKind.ONNXRUNTIME},
                "ort_int8": {"runtime": RuntimeKind.ONNXRUNTIME, "quantize": "int8", "quantize_options": loose},
                "pruned_fp32": {"runtime": RuntimeKind.PADDLE},
                "pruned_int8": {"runtime": RuntimeKind.ONNXRUNTIME, "quantize": "int8",
                                                   "quantize_options": loose}}
    sizes = {}
    for name, extra in variants.items():
        build(pruned if name.startswith("pruned") else example, repository,
              BuildOptions(task=Task.SEQ_CLS, name=name, overwrite=True, num_threads=args.threads, **extra),
              show_progress=False)
        files = find_program(model_version_dir(repository, name))
        sizes[name] = sum(p.stat().st_size for p in (files.model_file, files.params_file) if p) / 2**20
    workloads = {
        "short x32": [make_texts(32, False, seed=i) for i in range(args.requests)],
        "long x32": [make_texts(32, True, seed=i) for i in range(max(args.requests // 2, 2))],
        "single x1": [make_texts(1, False, seed=i) for i in range(args.requests * 5)],
    }
    results: dict[str, list[Result]] = {w: [] for w in workloads}
    for name in variants:  # the model step's own program, runtime and feeds (serving_core.encoder)
        engine = BareEngine(repository, name, Task.SEQ_CLS, args.threads)
        for workload, batches in workloads.items():
            feeds = [engine.feeds([(text,) for text in batch]) for batch in batches]
            engine.run(feeds[0])
            latencies, wall = timed(engine.run, feeds)
            results[workload].append(summarize(f"{name} bare", latencies, sum(map(len, batches)), wall))
    labels = {}
    with TritonServer(repository, ServerPorts.free()) as server:
        for name in variants:
            client = SeqClsClient(server.grpc_url, name)
            labels[name] = [r.label for batch in workloads["short x32"] for r in client.classify(batch)]
            for workload, batches in workloads.items():
                client.classify(batches[0])
                latencies, wall = timed(client.classify, batches)
                results[workload].append(summarize(f"{name} served", latencies, sum(map(len, batches)), wall))
    print("\n| variant | size MB | label agreement with paddle_fp32 |\n|---|---:|---:|")
    for name in variants:
        same = np.mean(np.array(labels[name]) == np.array(labels["paddle_fp32"]))
        print(f"| {name} | {sizes[name]:.1f} | {same:.3f} |")
    for workload, rows in results.items():
        base = rows[0].texts_per_s
        print(f"\n{workload}\n\n| system | texts/s | p50 ms | p99 ms | x paddle_fp32 bare |\n|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r.system} | {r.texts_per_s:.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                  f"{r.texts_per_s / base:.2f} |")


if __name__ == "__main__":
    main()
