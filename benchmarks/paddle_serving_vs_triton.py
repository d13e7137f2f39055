"""seq_cls served by the Triton ensemble and by the Paddle Serving pipeline, same model and texts.

    .venv/bin/python -m benchmarks.paddle_serving_vs_triton --requests 30

Each client runs in its own process (the Paddle Serving client needs protobuf's pure-Python
implementation, which would slow a Triton client sharing its process): batches of 8 texts,
one client, then 4 concurrent clients.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

LOOP = r'''
import sys, json, time, concurrent.futures
system, url, threads, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.stdin.read())
if system == "paddle_serving":
    from clients.paddle_serving import PaddleServingClient
    clients = [PaddleServingClient(url, "seq_cls") for _ in range(threads)]
    call = lambda i, b: clients[i % threads].predict(b)
else:
    from clients.seq_cls import SeqClsClient
    clients = [SeqClsClient(url, "seq_cls") for _ in range(threads)]
    call = lambda i, b: clients[i % threads].classify(b)
call(0, batches[0])
def one(i):
    t = time.perf_counter(); call(i, batches[i]); return time.perf_counter() - t
start = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    latencies = list(pool.map(one, range(len(batches))))
print(json.dumps({"latencies": latencies, "wall": time.perf_counter() - start}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--workdir", default="demo")
    args = parser.parse_args()

    from builder.build import build
    from builder.options import BuildOptions
    from builder.pipeline_server import PipelineService
    from builder.quiet import quiet_frameworks
    from builder.server import ServerPorts, TritonServer
    from serving_core.interface import Task

    from .common import ensure_example, print_table, summarize
    from .seq_cls_server_vs_bare import make_texts

    quiet_frameworks()
    work = Path(args.workdir)
    example = ensure_example(work, Task.SEQ_CLS)
    output = work / "bench_both"
    build(example, output, BuildOptions(task=Task.SEQ_CLS, name="seq_cls", target="all", overwrite=True),
          show_progress=False)
    batches = [make_texts(8, False, seed=i) for i in range(args.requests)]
    results = []
    with TritonServer(output / "triton", ServerPorts.free()) as triton, \
            PipelineService(output / "paddle_serving" / "seq_cls") as pipeline:
        for threads in (1, 4):
            for system, url in (("triton", triton.grpc_url), ("paddle_serving", pipeline.url)):
                done = subprocess.run([sys.executable, "-c", LOOP, system, url, str(threads)],
                                      input=json.dumps(batches), capture_output=True, text=True, check=True)
                data = json.loads(done.stdout.strip().splitlines()[-1])
                results.append(summarize(f"{system} c{threads}", data["latencies"], 8 * len(batches), data["wall"]))
    print(f"\n{8 * len(batches)} texts in batches of 8; ratios to the first row\n")
    print_table(results, baseline="x triton c1")


if __name__ == "__main__":
    main()
