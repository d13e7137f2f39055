"""Every task's example model as FP32, width-pruned (0.5), INT8 and pruned + INT8, in one run.

    .venv/bin/python -m benchmarks.studies.variants --requests 10

Per task and variant: size on disk, bare throughput (our tokenizer + windows + the engine in
process) and served throughput (its Triton ensemble, one client, batches of 8), and the
share of inputs whose served answer (label / entities / span / intent + slots) equals the
FP32 ensemble's. Pruned variants are not retrained (DynaBERT would be), so their agreement
shows what width pruning alone costs on these small models.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bare import BareEngine
from ..common import ensure_example, summarize, timed
from ..systems import TRITON, make_caller

VARIANTS = ("fp32", "pruned", "int8", "pruned_int8")


def _workloads(batch_size: int, requests: int):
    from builder.example import intents

    commands = [t for t, _, _ in intents.annotated_examples(0, per_template=30)]
    long_texts = ["，".join(commands[i % len(commands): i % len(commands) + 20]) for i in range(batch_size * requests)]
    qa_rows = intents.qa_examples(2, count=batch_size * requests, commands=16)
    return {
        "token_cls": [[(t,) for t in long_texts[i:i + batch_size]] for i in range(0, len(long_texts), batch_size)],
        "qa": [[(q, c) for q, c, _, _ in qa_rows[i:i + batch_size]] for i in range(0, len(qa_rows), batch_size)],
        "intent_slot": [[(t[:16],) for t in long_texts[i:i + batch_size]]
                        for i in range(0, len(long_texts), batch_size)],
    }


def _answer_key(task: str, answer) -> str:
    """The part of an answer that must match (floats left out)."""
    if task == "seq_cls":
        return answer.label_name if hasattr(answer, "label_name") else str(answer)
    if task == "token_cls":
        return json.dumps([(e["label"], e["start"], e["end"]) for e in answer["entities"]])
    if task == "qa":
        return answer["answer"]
    return json.dumps([answer["intent"]] + [(s["slot"], s["start"], s["end"]) for s in answer["slots"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10, help="batches of 8 per task")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="demo")
    args = parser.parse_args()

    from builder.build import build
    from builder.example.prune import prune_example
    from builder.options import BuildOptions
    from builder.engine.quantize import QuantizeOptions
    from builder.quiet import quiet_frameworks
    from builder.triton.repository import model_version_dir
    from builder.serving.triton_server import ServerPorts, TritonServer
    from serving_core.interface import Task
    from serving_core.program import find_program
    from serving_core.runtime import RuntimeKind

    quiet_frameworks()
    work = Path(args.workdir)
    repository = work / "bench_variants"
    workloads = _workloads(8, args.requests)
    workloads["seq_cls"] = [[(t[0][:40],) for t in batch] for batch in workloads["token_cls"]]
    loose = QuantizeOptions(min_agreement=0.0)  # measuring, not gating
    sizes, measured, answers = {}, {}, {}
    for task in workloads:
        example = ensure_example(work, task)
        pruned = prune_example(example, Task(task), 0.5, work / f"{task}_width_mult_0.5")
        for variant in VARIANTS:
            int8 = {"runtime": RuntimeKind.ONNXRUNTIME, "quantize": "int8", "quantize_options": loose}
            extra = int8 if variant.endswith("int8") else {"runtime": RuntimeKind.PADDLE}
            name = f"{task}_{variant}"
            build(pruned if variant.startswith("pruned") else example, repository,
                  BuildOptions(task=Task(task), name=name, overwrite=True, num_threads=args.threads, **extra),
                  show_progress=False)
            files = find_program(model_version_dir(repository, name))
            sizes[name] = sum(p.stat().st_size for p in (files.model_file, files.params_file) if p) / 2**20
            engine = BareEngine(repository, name, Task(task), args.threads)

            def run(rows, engine=engine):  # tokenizer + windows + engine, as the table says
                engine.run(engine.feeds(rows))
            run(workloads[task][0])
            latencies, wall = timed(run, workloads[task])
            measured[name] = [summarize("bare", latencies, sum(map(len, workloads[task])), wall)]
    with TritonServer(repository, ServerPorts.free()) as server:
        for task, batches in workloads.items():
            for variant in VARIANTS:
                name = f"{task}_{variant}"
                served = make_caller(TRITON, Task(task), server.grpc_url, name)
                served(batches[0])
                latencies, wall = timed(served, batches)
                measured[name].append(summarize("served", latencies, sum(map(len, batches)), wall))
                answers[name] = [_answer_key(task, a) for batch in batches for a in served(batch)]
    print("\n| task | variant | size MB | bare texts/s | served texts/s | served p99 ms | agreement with fp32 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for task in workloads:
        for variant in VARIANTS:
            name = f"{task}_{variant}"
            bare, served = measured[name]
            same = sum(a == b for a, b in zip(answers[name], answers[f"{task}_fp32"])) / len(answers[name])
            print(f"| {task} | {variant} | {sizes[name]:.1f} | {bare.texts_per_s:.1f} | {served.texts_per_s:.1f} | "
                  f"{served.p99_ms:.1f} | {same:.3f} |")


if __name__ == "__main__":
    main()
