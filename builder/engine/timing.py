"""How fast an engine runs the shapes a server gives it, measured at build time.

Served traffic does not repeat one shape: texts differ in length and the dynamic batcher forms
batches of whatever size its queue holds, so a server sees many distinct shapes. Paddle
Inference's oneDNN kernels prepare themselves for each input shape, and keep what they prepared
for some recent shapes only. How many depends on the machine (ERNIE 3.0 Medium, 2 threads, one
text at a time): on one, about 10, and past that every shape change prepared them again (33 ms on
oneDNN against 18 ms on Paddle's native kernels while the lengths cycled through 12 values); on
another (AMD EPYC, AVX2) all 12, but the first run of each shape took 184 ms against 42 ms after
(native: 121 ms). Timing one shape over and over would hide the first case, and timing each shape
once only would show the second's start-up cost as its speed. So each cycle has more shapes
than the first machine keeps (the `short` cycle is one text of 10-21 tokens, 12 lengths; the
`long` cycle batches of 2-4 texts 0-24 tokens short of max_seq_len, 12 shapes, reported per 8
texts), every shape of it runs once unmeasured, and then whole cycles are timed: what a warm
server sees.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from serving_core.encoder import FeedEncoder
from serving_core.windows import WindowSettings

SHORT_TEXT = "明天早上七点提醒我给妈妈打电话然后把空调调到二十六度"  # CJK: one token a character, plus [CLS] and [SEP]
SHORT_LENGTHS = (14, 10, 16, 12, 18, 11, 15, 9, 17, 13, 19, 8)  # characters of SHORT_TEXT, one text a run
LONG_TEXT = "导航到北京西站然后播放周杰伦的歌" * 64
LONG_SHAPES = tuple((texts, cut) for cut in (0, 8, 16, 24) for texts in (4, 2, 3))  # (texts, tokens below
# max_seq_len) a run: 12 shapes
LONG_PER = 8  # long timings are per this many texts
BUDGET_S = {"short": 0.5, "long": 1.0}  # per engine and cycle: a moment, not a benchmark
MAX_RUNS = 60


@dataclass(frozen=True)
class ShapeCycle:
    """The feeds of one cycle, and how many texts each holds."""

    feeds: tuple[dict, ...]
    texts: tuple[int, ...]


def served_shapes(tokenizer, names: list[str]) -> dict[str, ShapeCycle]:
    """The `short` and `long` cycles for a program with inputs `names`."""
    encoder = FeedEncoder(tokenizer, WindowSettings(), names)
    short = tuple(encoder.encode([[SHORT_TEXT[:n]]]).feeds for n in SHORT_LENGTHS)
    full = tokenizer.settings.max_seq_len - 2  # characters that fill max_seq_len with [CLS] and [SEP]
    long = tuple(encoder.encode([[LONG_TEXT[:max(1, full - cut)]] * texts]).feeds for texts, cut in LONG_SHAPES)
    return {"short": ShapeCycle(short, (1,) * len(short)), "long": ShapeCycle(long, tuple(t for t, _ in LONG_SHAPES))}


def time_runner(runner, shapes: dict[str, ShapeCycle]) -> tuple[float, float]:
    """(median ms of one short text, median ms per LONG_PER long texts), each over whole cycles."""
    return (_median_ms_per_text(runner, shapes["short"], BUDGET_S["short"]),
            LONG_PER * _median_ms_per_text(runner, shapes["long"], BUDGET_S["long"]))


def _median_ms_per_text(runner, cycle: ShapeCycle, budget_s: float) -> float:
    typed = [{t.name: feeds[t.name].astype(t.dtype) for t in runner.signature.inputs} for feeds in cycle.feeds]
    for feeds in typed:  # warm-up: allocations, each shape's first-run preparation
        runner.run(feeds)
    per_text, started = [], time.perf_counter()
    while len(per_text) < len(typed) or (time.perf_counter() - started < budget_s and len(per_text) < MAX_RUNS):
        index = len(per_text) % len(typed)
        begin = time.perf_counter()
        runner.run(typed[index])
        per_text.append((time.perf_counter() - begin) / cycle.texts[index])
    return 1000 * statistics.median(per_text)


def relative_scores(timed: dict[str, tuple[float, float]], expect: str) -> dict[str, float]:
    """Each (short ms, long ms) relative to the fastest at that shape, for the expected traffic:
    short, long, or mixed (the geometric mean of the two); lowest is best."""
    best_short = min(short for short, _ in timed.values())
    best_long = min(long for _, long in timed.values())
    return {name: {"short": short / best_short, "long": long / best_long,
                   "mixed": math.sqrt(short / best_short * long / best_long)}[expect]
            for name, (short, long) in timed.items()}
