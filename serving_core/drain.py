"""Stop taking traffic without failing a request in flight: a drain before Triton is stopped.

Triton's own shutdown (SIGINT/SIGTERM) refuses new requests at once, and that includes the next
step of an ensemble request already in flight: a large request caught between its steps fails.
A drain therefore comes first:

1. The server stops being ready: a model that cannot load (`NOT_READY_MODEL`, a step whose code
   raises) is loaded from the request's own files; with strict readiness (Triton's default) a
   model that failed to load makes `/v2/health/ready` answer 400, so load balancers and
   Kubernetes stop sending, while every model keeps answering.
2. It keeps serving for `delay_s`, the time those load balancers take to notice.
3. Every ensemble is unloaded. Triton refuses new requests to it at once, lets each request in
   flight finish all its steps, and reports the ensemble UNAVAILABLE when the last one is answered.
   The drain waits for that, then does the same for every other model (steps, `_direct` models),
   all within `timeout_s`; then the server can be stopped, and has nothing left to wait for.

Standard library only: `builder serve` runs it on SIGTERM; a Kubernetes preStop hook runs it
before the stop (`python3 -m serving_core.drain --url 127.0.0.1:8000`); and a container whose
stop is a SIGTERM to its first process runs Triton under it
(`python3 -m serving_core.drain -- tritonserver ARGS`: drained on SIGTERM, then stopped). The
admin key comes from $ERNIE_SERVING_ADMIN_KEY, since unloading is an admin API.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from serving_core.health import ADMIN_HEADER, call_json, index_states, ready_ensembles

NOT_READY_MODEL = "_draining"  # its failed load is what makes the server report not ready
_NOT_READY_CONFIG = {"backend": "python", "max_batch_size": 0,
                     "input": [{"name": "DRAINING", "data_type": "TYPE_INT32", "dims": [1]}],
                     "output": [{"name": "DRAINING", "data_type": "TYPE_INT32", "dims": [1]}]}
_NOT_READY_REASON = "this server is draining: it answers the requests in flight, no new ones"
_NOT_READY_CODE = f"raise RuntimeError({_NOT_READY_REASON!r})\n".encode()


_HOLDING = ("READY", "UNLOADING")  # an unloaded ensemble is one of these until its last request is answered


@dataclass(frozen=True)
class DrainOptions:
    delay_s: float = 5.0  # not ready but still serving, while load balancers notice
    timeout_s: float = 30.0  # for the requests in flight to be answered
    poll_s: float = 0.1


@dataclass(frozen=True)
class DrainReport:
    ensembles: tuple[str, ...]  # unloaded
    unanswered: tuple[str, ...]  # models still holding requests when the timeout passed
    seconds: float

    def summary(self) -> str:
        drained = f"drained {len(self.ensembles)} ensemble(s) in {self.seconds:.1f} s"
        if self.unanswered:
            return f"{drained}; still answering after the timeout: {', '.join(self.unanswered)}"
        return f"{drained}; every request in flight was answered"


def mark_not_ready(base_url: str, headers: dict[str, str], timeout: float = 30.0) -> None:
    """Make the server report not ready (its models keep answering)."""
    body = {"parameters": {"config": json.dumps(_NOT_READY_CONFIG),
                           "file:1/model.py": base64.b64encode(_NOT_READY_CODE).decode("ascii")}}
    try:
        call_json(f"{base_url}/v2/repository/models/{NOT_READY_MODEL}/load", body, headers, timeout)
    except RuntimeError as exc:  # the load is meant to fail, with its own reason; any other is the drain's error
        if _NOT_READY_REASON not in str(exc):
            raise
    else:
        raise RuntimeError(f"{NOT_READY_MODEL} loaded, so the server still reports ready")


def _states(base_url: str, headers: dict[str, str], timeout: float) -> dict[str, str]:
    return index_states(call_json(f"{base_url}/v2/repository/index", {}, headers, timeout))


def drain(base_url: str, headers: dict[str, str], options: DrainOptions = DrainOptions(),
          log=lambda message: None) -> DrainReport:
    """Not ready, keep serving `delay_s`, unload every ensemble and wait until the requests in
    flight on them are answered, then the same for every other model (the steps, `_direct`
    models), all within `timeout_s`. Raises RuntimeError when the server refuses a step."""
    started = time.monotonic()
    mark_not_ready(base_url, headers)
    ensembles = sorted(ready_ensembles(base_url, headers))
    log(f"not ready: new requests go elsewhere; still serving {options.delay_s:g} s, then "
        f"{', '.join(ensembles) or 'no ensemble'} take(s) no new request and get up to "
        f"{options.timeout_s:g} s to answer those in flight")
    time.sleep(options.delay_s)
    deadline = time.monotonic() + options.timeout_s
    unanswered = unload_and_wait(base_url, headers, ensembles, deadline, options.poll_s)
    if not unanswered:  # the steps are idle now; a model called directly may still be answering
        others = [name for name, state in _states(base_url, headers, 30.0).items() if state == "READY"]
        unanswered = unload_and_wait(base_url, headers, others, deadline, options.poll_s)
    return DrainReport(tuple(ensembles), tuple(unanswered), time.monotonic() - started)


def unload_and_wait(base_url: str, headers: dict[str, str], names: list[str], deadline: float,
                    poll_s: float = 0.1) -> list[str]:
    """Unload `names` (not the models they use); those still answering requests when `deadline`
    (time.monotonic) passes. A step used by an ensemble request in flight is held until it is answered."""
    for name in names:
        call_json(f"{base_url}/v2/repository/models/{name}/unload",
                  {"parameters": {"unload_dependents": False}}, headers, 30.0)
    busy = list(names)
    while busy:
        states = _states(base_url, headers, 30.0)
        busy = [name for name in busy if states.get(name) in _HOLDING]
        if not busy or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    return busy


def run_draining(command: list[str], base_url: str, headers: dict[str, str], options: DrainOptions,
                 log=lambda message: None) -> int:
    """Run `command` (a tritonserver) as a child; on SIGTERM or SIGINT drain it, then stop it with
    SIGINT (a second signal stops it at once). Returns its exit code. For containers whose stop
    is a SIGTERM to their first process (`docker stop`, compose)."""
    child = subprocess.Popen(command)
    signals: list[int] = []

    def on_signal(signum, _frame):
        signals.append(signum)
        if len(signals) > 1 and child.poll() is None:
            child.send_signal(signal.SIGINT)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    while child.poll() is None and not signals:
        time.sleep(0.2)
    if child.poll() is None:
        try:
            log(drain(base_url, headers, options, log).summary())
        except (OSError, RuntimeError) as exc:
            log(f"the drain failed, stopping anyway: {exc}")
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    return child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8000", help="Triton HTTP address (default: %(default)s)")
    parser.add_argument("--delay", type=float, default=DrainOptions.delay_s,
                        help="seconds still serving after turning not ready (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=DrainOptions.timeout_s,
                        help="seconds the requests in flight get to be answered (default: %(default)s)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- tritonserver ARGS: run it, and drain it when SIGTERM or SIGINT comes (a container's "
                             "command); without it, drain the server at --url now (a preStop hook)")
    args = parser.parse_args(argv)
    key = os.environ.get("ERNIE_SERVING_ADMIN_KEY", "")
    if not key:
        print("drain: ERNIE_SERVING_ADMIN_KEY is not set; unloading models is an admin API", file=sys.stderr)
        return 2
    base = args.url if args.url.startswith("http") else f"http://{args.url}"
    options = DrainOptions(args.delay, args.timeout)
    say = lambda message: print(f"drain: {message}", file=sys.stderr, flush=True)  # noqa: E731
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command:
        return run_draining(command, base, {ADMIN_HEADER: key}, options, say)
    try:
        report = drain(base, {ADMIN_HEADER: key}, options, log=say)
    except (OSError, RuntimeError) as exc:
        print(f"drain failed: {exc}", file=sys.stderr)
        return 1
    say(report.summary())
    return 1 if report.unanswered else 0


if __name__ == "__main__":
    sys.exit(main())
