"""A step's backend stub killed under load, served by `builder serve`: how many requests fail
and how soon every answer is right again (the supervisor's probe and reload).

    .venv/bin/python -m benchmarks.studies.faults [--step model|tokenizer|postprocess] [--clients 8]
                                          [--seconds 40] [--kill-at 8] [--work demo/bench-faults]

Closed-loop gRPC clients send one seq_cls text each, over and over; at --kill-at seconds the
step's stub gets SIGKILL. Prints the requests sent and failed, the first and last failure after
the kill, and whether every answer after the last failure was right.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TEXT = "播放周杰伦的花心"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", choices=["model", "tokenizer", "postprocess"], default="model")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--kill-at", type=float, default=8.0)
    parser.add_argument("--work", default="demo/bench-faults")
    args = parser.parse_args(argv)

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from builder.build import build
    from builder.options import BuildOptions
    from builder.serving.triton_server import ServerPorts
    from clients.triton import bytes_input
    from serving_core.interface import Task

    from ..common import descendants_running, ensure_example

    work = Path(args.work)
    repository = work / "repository"
    build(ensure_example(work, "seq_cls"), repository, BuildOptions(task=Task.SEQ_CLS, name="intent", overwrite=True),
          show_progress=False)
    ports = ServerPorts.free()
    serve = subprocess.Popen([sys.executable, "-m", "builder", "serve", str(repository), "--grpc-port",
                              str(ports.grpc), "--http-port", str(ports.http), "--metrics-port", str(ports.metrics)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(serve.stdout), daemon=True).start()
    try:
        while not any("serving" in line for line in lines):
            if serve.poll() is not None:
                print("".join(lines), file=sys.stderr)
                return 1
            time.sleep(0.2)
        url = f"127.0.0.1:{ports.grpc}"
        expected = grpcclient.InferenceServerClient(url).infer("intent", [bytes_input("TEXT", [TEXT])]) \
            .as_numpy("label_name").ravel()[0]
        started = time.monotonic()
        stop, kill_at = started + args.seconds, started + args.kill_at
        events: list[tuple[float, bool]] = []

        def client() -> None:
            connection = grpcclient.InferenceServerClient(url)
            while time.monotonic() < stop:
                try:
                    answer = connection.infer("intent", [bytes_input("TEXT", [TEXT])], client_timeout=30)
                    events.append((time.monotonic(), answer.as_numpy("label_name").ravel()[0] == expected))
                except InferenceServerException:
                    events.append((time.monotonic(), False))

        def killer() -> None:
            time.sleep(max(0.0, kill_at - time.monotonic()))
            (stub,) = descendants_running(serve.pid, f"/intent_{args.step}/")
            stub.kill()

        with concurrent.futures.ThreadPoolExecutor(args.clients + 1) as pool:
            for future in [pool.submit(client) for _ in range(args.clients)] + [pool.submit(killer)]:
                future.result()
        failed = [t for t, ok in events if not ok]
        last = max(failed, default=kill_at)
        after = [ok for t, ok in events if t > last]
        print(f"step {args.step}: {len(events)} requests, {len(failed)} failed; first failure "
              f"{(min(failed) - kill_at) if failed else 0:.1f} s after the kill, last {last - kill_at:.1f} s after; "
              f"{sum(after)} of {len(after)} requests after that right")
        print("".join(line for line in lines if "supervisor" in line), end="")
        return 0 if all(after) else 1
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(60)


if __name__ == "__main__":
    sys.exit(main())
