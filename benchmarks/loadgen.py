"""One measurement point, in its own process: a closed loop of `concurrency` clients.

    python -m benchmarks.loadgen POINT.json      (written by benchmarks.run; prints one JSON line)

Each client thread sends the workload's requests back to back. Warm-up lasts until every
client has had an answer and `warmup_s` has passed; the window then runs from one
completion to the first completion after at least `seconds` and `concurrency` more
completions. Only requests that complete inside the window count. The served process tree (the server and its children,
or this process for the bare engine) is sampled for RSS and CPU time over the window; for
Triton, the per-step statistics over the window are read too (where the time goes).

The bare engine has no clients: at concurrency c it runs batches of c requests (capped at
the model's max batch size), the batch a perfect server would form, one after another.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Point:
    """What to measure (the JSON file benchmarks.run writes)."""

    system: str  # System.name
    kind: str
    task: str
    workload: str
    workload_file: str
    concurrency: int
    seconds: float
    warmup_s: float
    server_pid: int = 0  # 0: this process
    url: str = ""
    model: str = ""
    repository: str = ""  # bare engine: the Triton repository whose model step it runs
    num_threads: int = 2
    max_batch_size: int = 64
    triton_models: dict[str, str] = field(default_factory=dict)  # role -> model (EnsembleSpec.step_roles)


@dataclass
class Measurement:
    requests: int
    texts: int
    window_s: float
    texts_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    errors: int = 0
    first_error: str = ""
    rss_mb: float = 0.0  # peak resident memory of the served process tree
    cpu_cores: float = 0.0  # CPU seconds of the served process tree per second of window
    client_cpu_cores: float = 0.0  # the same for this load generator (it shares the machine)
    steps: dict = field(default_factory=dict)  # Triton: per model, averages over the window
    kernels: str = ""  # bare Paddle: the kernels its build serves ("oneDNN" or "native")


class TreeSampler:
    """Peak RSS and CPU time of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.2):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid or None)  # 0: this process
        self.every_s = every_s
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _tree(self):
        try:
            return [self.root, *self.root.children(recursive=True)]
        except self._psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except self._psutil.NoSuchProcess:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except self._psutil.NoSuchProcess:
                pass
        return total

    def _loop(self):
        while not self._stop.wait(self.every_s):
            self.peak_rss = max(self.peak_rss, self.rss())

    def __enter__(self):
        self.peak_rss = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def triton_statistics(url: str, models: dict[str, str]) -> dict[str, dict[str, float]]:
    """Cumulative counters of each model by its role: requests, executions, nanoseconds per stage."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    counters = {}
    for role, model in models.items():
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        inference = stats.get("inference_stats", {})
        row = {"requests": float(inference.get("success", {}).get("count", 0)),
               "executions": float(stats.get("execution_count", 0)),
               "inferences": float(stats.get("inference_count", 0))}
        for stage in ("queue", "compute_input", "compute_infer", "compute_output", "success"):
            row[f"{stage}_ns"] = float(inference.get(stage, {}).get("ns", 0))
        counters[role] = row
    client.close()
    return counters


def step_profile(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Per step role over the window: mean ms per request in each stage, and the mean batch size."""
    profile = {}
    for model, end in after.items():
        start = before[model]
        requests = end["requests"] - start["requests"]
        executions = end["executions"] - start["executions"]
        if requests <= 0:
            continue
        row = {stage: (end[f"{stage}_ns"] - start[f"{stage}_ns"]) / requests / 1e6
               for stage in ("queue", "compute_input", "compute_infer", "compute_output", "success")}
        row["requests"] = requests
        row["mean_batch"] = (end["inferences"] - start["inferences"]) / executions if executions else 0.0
        profile[model] = row
    return profile


def _summary(latencies: list[float], texts: int, window: float, errors: list[str]) -> Measurement:
    ms = np.array(latencies or [float("nan")]) * 1000
    p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
    return Measurement(len(latencies), texts, window, texts / window if window > 0 else 0.0, p50, p95, p99,
                       float(np.mean(ms)), len(errors), errors[0] if errors else "")


def measure_served(point: Point, requests: list[list[tuple[str, ...]]]) -> Measurement:
    from serving_core.interface import Task

    from .systems import make_caller

    callers = [make_caller(point.kind, Task(point.task), point.url, point.model) for _ in range(point.concurrency)]
    order = itertools.count()
    done: list[tuple[float, float, int]] = []  # (start, end, texts)
    errors: list[str] = []
    answered = [0] * point.concurrency
    stop = threading.Event()

    def client(index: int):
        call = callers[index]
        while not stop.is_set():
            rows = requests[next(order) % len(requests)]
            started = time.perf_counter()
            try:
                call(rows)
            except Exception as exc:  # counted and reported, never silent
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            done.append((started, time.perf_counter(), len(rows)))
            answered[index] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(point.concurrency)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    while not (all(answered) and time.perf_counter() - begin >= point.warmup_s):
        if len(errors) > 20 and not any(answered):
            stop.set()
            raise RuntimeError(f"{point.system}: every request fails: {errors[0]}")
        time.sleep(0.01)
    own = TreeSampler(0)
    with TreeSampler(point.server_pid) as sampler:
        stats_before = triton_statistics(point.url, point.triton_models) if point.triton_models else {}
        cpu_before, own_before, sampled_from = sampler.cpu_seconds(), own.cpu_seconds(), time.perf_counter()
        # The window runs from one completion to another: answers can come in bursts (one
        # batch answers several clients), and a window cut between bursts would miscount.
        completed_before = len(done)
        while len(done) == completed_before:
            time.sleep(0.001)
        window_start, first = done[completed_before][1], completed_before + 1
        errors_before = len(errors)
        while (time.perf_counter() - window_start < point.seconds or len(done) - first < point.concurrency):
            time.sleep(0.01)
        snapshot = list(done)
        window_end = max(e for _, e, _ in snapshot[first:])
        sampled = time.perf_counter() - sampled_from
        cpu, own_cpu = sampler.cpu_seconds() - cpu_before, own.cpu_seconds() - own_before
        stats_after = triton_statistics(point.url, point.triton_models) if point.triton_models else {}
    stop.set()
    counted = [(s, e, n) for s, e, n in snapshot if window_start < e <= window_end]
    result = _summary([e - s for s, e, _ in counted], sum(n for _, _, n in counted), window_end - window_start,
                      errors[errors_before:])
    result.rss_mb, result.cpu_cores = sampler.peak_rss / 2**20, cpu / sampled
    result.client_cpu_cores = own_cpu / sampled
    result.steps = step_profile(stats_before, stats_after)
    for t in threads:
        t.join(timeout=600)
    return result


def measure_bare(point: Point, requests: list[list[tuple[str, ...]]]) -> Measurement:
    from serving_core.interface import Task

    from .bare import BareEngine

    engine = BareEngine(Path(point.repository), point.model, Task(point.task), point.num_threads)
    per_batch = max(1, min(point.concurrency, point.max_batch_size // max(1, len(requests[0]))))
    batches = [[row for request in requests[i:i + per_batch] for row in request]
               for i in range(0, len(requests) - per_batch + 1, per_batch)] or [sum(requests, [])]
    feeds = [(engine.feeds(rows), len(rows)) for rows in batches]  # pre-tokenized: not timed
    warm_end = time.perf_counter() + point.warmup_s
    for index in itertools.count():  # at least one batch of warm-up
        engine.run(feeds[index % len(feeds)][0])
        if time.perf_counter() >= warm_end:
            break
    latencies, texts = [], 0
    with TreeSampler(0) as sampler:
        cpu_before, started = sampler.cpu_seconds(), time.perf_counter()
        for index in itertools.count():
            feed, count = feeds[index % len(feeds)]
            t = time.perf_counter()
            engine.run(feed)
            latencies.append(time.perf_counter() - t)
            texts += count
            if time.perf_counter() - started >= point.seconds and index >= 2:
                break
        window = time.perf_counter() - started
        cpu = sampler.cpu_seconds() - cpu_before
    result = _summary(latencies, texts, window, [])
    result.rss_mb, result.cpu_cores = sampler.peak_rss / 2**20, cpu / window
    result.kernels = engine.paddle_kernels
    return result


def main(argv: list[str] | None = None) -> int:
    point = Point(**json.loads(Path((argv or sys.argv[1:])[0]).read_text(encoding="utf-8")))
    requests = [[tuple(row) for row in request]
                for request in json.loads(Path(point.workload_file).read_text(encoding="utf-8"))]
    if point.kind == "paddle_serving":
        import clients.paddle_serving  # noqa: F401  (first: it selects protobuf's Python implementation)
    os.environ.setdefault("GLOG_minloglevel", "2")
    measure = measure_bare if point.kind == "bare" else measure_served
    print(json.dumps(asdict(measure(point, requests)), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
