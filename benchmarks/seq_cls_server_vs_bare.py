"""seq_cls: the served ensemble against the bare engine on the same texts and batches.

    .venv/bin/python -m benchmarks.seq_cls_server_vs_bare --batch-size 32 --requests 40

Systems, in one run on the same model and texts:
  bare_engine      Paddle Inference on pre-tokenized batches (the ceiling)
  bare_tokenize    our tokenizer + Paddle Inference, in process
  triton_c1        the Triton ensemble, one client sending batches back to back
  triton_c4        the same with 4 concurrent clients
Prints a markdown table (throughput, p50/p95/p99 per batch, ratio to the bare engine) and
writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .common import Result, ensure_example, print_table, summarize as _summarize, timed as _timed


def make_texts(count: int, long: bool, seed: int = 0) -> list[str]:
    from builder.example import intents

    rng = np.random.default_rng(seed)
    base = [t for t, _ in intents.examples(0, per_template=50)]
    texts = [base[i] for i in rng.integers(0, len(base), count)]
    if long:  # about 120 tokens: several commands joined
        texts = ["，".join(base[j] for j in rng.integers(0, len(base), 14)) for _ in range(count)]
    return texts


def run(args) -> list[Result]:
    from builder.build import build
    from builder.options import BuildOptions
    from builder.quiet import quiet_frameworks
    from builder.server import ServerPorts, TritonServer
    from builder.triton_config import BatchingOptions
    from clients.seq_cls import SeqClsClient
    from serving_core.interface import Task
    from serving_core.program import find_program
    from serving_core.runtime import PaddleRunner
    from serving_core.tokenization import ErnieTokenizer, settings_from_tokenizer_config

    quiet_frameworks()
    work = Path(args.workdir)
    example = ensure_example(work, Task.SEQ_CLS)
    repository = work / "bench_repository"
    build(example, repository, BuildOptions(task=Task.SEQ_CLS, name="bench", overwrite=True, max_seq_len=128,
                                            num_threads=args.threads,
                                            model_batching=BatchingOptions(max_batch_size=max(64, args.batch_size))),
          show_progress=False)
    texts = make_texts(args.batch_size * args.requests, args.long)
    batches = [texts[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]

    tokenizer = ErnieTokenizer.from_files(example / "vocab.txt", settings_from_tokenizer_config(example, 128))
    runner = PaddleRunner(find_program(repository / "bench_model" / "1"), num_threads=args.threads)
    encoded = [tokenizer.encode(b) for b in batches]
    feeds = [{"input_ids": e.input_ids, "token_type_ids": e.token_type_ids} for e in encoded]
    tokens = float(np.mean([e.lengths.mean() for e in encoded]))
    for f in feeds[:3]:
        runner.run(f)  # warm-up
    lat, wall = _timed(runner.run, feeds, 1)
    results = [_summarize("bare_engine", lat, len(texts), wall)]

    def tokenize_and_run(batch):
        e = tokenizer.encode(batch)
        runner.run({"input_ids": e.input_ids, "token_type_ids": e.token_type_ids})

    lat, wall = _timed(tokenize_and_run, batches, 1)
    results.append(_summarize("bare_tokenize", lat, len(texts), wall))

    with TritonServer(repository, ServerPorts.free()) as server:
        client = SeqClsClient(server.grpc_url, "bench")
        for b in batches[:3]:
            client.classify(b)  # warm-up
        lat, wall = _timed(client.classify, batches, 1)
        results.append(_summarize("triton_c1", lat, len(texts), wall))

        clients = [SeqClsClient(server.grpc_url, "bench") for _ in range(4)]

        def one(i):
            t = time.perf_counter()
            clients[i % 4].classify(batches[i])
            return time.perf_counter() - t

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            lat = list(pool.map(one, range(len(batches))))
        results.append(_summarize("triton_c4", lat, len(texts), time.perf_counter() - started))
    print(f"\n{len(texts)} texts, batch {args.batch_size}, mean {tokens:.1f} tokens/text, "
          f"{args.threads} math threads\n")
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"batch_size": args.batch_size, "texts": len(texts),
                                               "mean_tokens": tokens, "results": [asdict(r) for r in results]},
                                              indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--requests", type=int, default=40, help="batches per system")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long", action="store_true", help="about 120-token texts instead of short commands")
    parser.add_argument("--workdir", default="demo")
    parser.add_argument("--json", help="write the results here")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
