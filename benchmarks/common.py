"""Timing and reporting shared by the benchmarks."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Result:
    system: str
    texts_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def summarize(system: str, latencies: list[float], texts: int, wall: float) -> Result:
    ms = np.array(latencies) * 1000
    return Result(system, texts / wall, *(float(np.percentile(ms, q)) for q in (50, 95, 99)))


def timed(fn, batches, repeats: int = 1) -> tuple[list[float], float]:
    """Per-call latencies and total wall time of `fn(batch)` over the batches."""
    latencies = []
    started = time.perf_counter()
    for _ in range(repeats):
        for batch in batches:
            t = time.perf_counter()
            fn(batch)
            latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - started


def ensure_example(work, task):
    """The example model of `task` under `work`, trained first if missing or unfinished."""
    from pathlib import Path

    from builder.example import make_example
    from serving_core.interface import Task

    example = Path(work) / f"{Task(task).value}_example"
    if not (example / "example.json").is_file():  # written last, when the example is complete
        make_example(Task(task), example)
    return example


def descendants_running(pid: int, *markers: str) -> list:
    """The descendants of process `pid` whose command line holds every one of `markers` (e.g. a
    model's backend stubs). One that exits or turns zombie while they are listed is left out,
    not raised."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if all(marker in command for marker in markers):
                found.append(child)
        except psutil.Error:
            continue
    return found
