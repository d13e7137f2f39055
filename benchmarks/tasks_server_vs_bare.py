"""token_cls, qa and intent_slot: the served ensemble against the bare engine, same inputs.

    .venv/bin/python -m benchmarks.tasks_server_vs_bare --requests 20

Per task, in one run: `bare` = our tokenizer + windows + Paddle Inference in process (the
ceiling the server can reach), `triton` = the generated ensemble over gRPC, one client,
batches of --batch-size texts. Long inputs on purpose: token_cls texts and qa contexts
need several windows at the default max_seq_len 128.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import ensure_example, print_table, summarize, timed


def _workloads(batch_size: int, requests: int):
    from builder.example import intents

    commands = [t for t, _, _ in intents.annotated_examples(0, per_template=30)]
    long_texts = ["，".join(commands[i % len(commands): i % len(commands) + 20]) for i in range(batch_size * requests)]
    qa_rows = intents.qa_examples(2, count=batch_size * requests, commands=16)
    return {
        "token_cls": [[(t,) for t in long_texts[i:i + batch_size]] for i in range(0, len(long_texts), batch_size)],
        "qa": [[(q, c) for q, c, _, _ in qa_rows[i:i + batch_size]] for i in range(0, len(qa_rows), batch_size)],
        "intent_slot": [[(t[:16],) for t in long_texts[i:i + batch_size]] for i in range(0, len(long_texts), batch_size)],
    }


def _bare(task: str, repository: Path, name: str, threads: int, runtime=None):
    from builder.verify import model_parameters
    from serving_core.parameters import from_parameters
    from serving_core.program import find_program
    from serving_core.runtime import RequestBatcher, RuntimeKind, create_runner
    from serving_core.tokenization import ErnieTokenizer, TokenizerSettings
    from serving_core.windows import WindowSettings, encode_windows

    parameters = model_parameters(repository, name, "tokenizer")
    settings, window = from_parameters(TokenizerSettings, parameters), from_parameters(WindowSettings, parameters)
    tokenizer = ErnieTokenizer.from_files(repository / f"{name}_tokenizer" / "1" / "vocab.txt", settings)
    runner = create_runner(runtime or RuntimeKind.PADDLE, find_program(repository / f"{name}_model" / "1"), threads)
    batcher = RequestBatcher(runner, {"input_ids": tokenizer.pad_id}, {})
    inputs = [t.name for t in runner.signature.inputs]

    def run(rows):
        columns = list(zip(*rows))
        texts, questions = (list(columns[1]), list(columns[0])) if task == "qa" else (list(columns[0]), None)
        batch = encode_windows(tokenizer, texts, window.stride, questions, window.max_question_len, window.max_windows)
        feeds = {"input_ids": batch.input_ids, "token_type_ids": batch.token_type_ids}
        if task == "seq_cls":  # one window per text: [B, L]
            feeds = {k: v[:, 0] for k, v in feeds.items()}
        batcher.run([{n: feeds[n] for n in inputs}])
    return run


def _served(task: str, url: str, name: str):
    from clients.intent_slot import IntentSlotClient
    from clients.qa import QAClient
    from clients.seq_cls import SeqClsClient
    from clients.token_cls import TokenClsClient

    if task == "seq_cls":
        seq_client = SeqClsClient(url, name)
        return lambda rows: seq_client.classify([r[0] for r in rows])

    if task == "qa":
        client = QAClient(url, name)
        return lambda rows: client.answer([r[0] for r in rows], [r[1] for r in rows])
    client = (TokenClsClient if task == "token_cls" else IntentSlotClient)(url, name)
    call = client.entities if task == "token_cls" else client.parse
    return lambda rows: call([r[0] for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="demo")
    args = parser.parse_args()

    from builder.build import build
    from builder.options import BuildOptions
    from builder.quiet import quiet_frameworks
    from builder.server import ServerPorts, TritonServer
    from serving_core.interface import Task

    quiet_frameworks()
    work = Path(args.workdir)
    repository = work / "bench_tasks_repository"
    workloads = _workloads(args.batch_size, args.requests)
    for task in workloads:
        example = ensure_example(work, task)
        started = time.perf_counter()
        build(example, repository, BuildOptions(task=Task(task), name=task, overwrite=True, num_threads=args.threads),
              show_progress=False)
        print(f"build {task}: {time.perf_counter() - started:.2f} s")
    bare = {task: _bare(task, repository, task, args.threads) for task in workloads}
    measured = {}
    for task, batches in workloads.items():
        bare[task](batches[0])
        latencies, wall = timed(bare[task], batches)
        measured[task] = [summarize("bare", latencies, sum(map(len, batches)), wall)]
    del bare
    with TritonServer(repository, ServerPorts.free()) as server:
        for task, batches in workloads.items():
            served = _served(task, server.grpc_url, task)
            served(batches[0])
            latencies, wall = timed(served, batches)
            measured[task].append(summarize("triton", latencies, sum(map(len, batches)), wall))
    for task, results in measured.items():
        print(f"\n{task}: {sum(map(len, workloads[task]))} inputs, batch {args.batch_size}\n")
        print_table(results)


if __name__ == "__main__":
    main()
