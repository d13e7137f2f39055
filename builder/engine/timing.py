"""How fast an engine runs the shapes a server gives it, measured at build time.

Served traffic does not repeat one shape: texts differ in length and the dynamic batcher forms
batches of whatever size its queue holds, so a server sees many distinct shapes. Paddle
Inference's oneDNN kernels keep what they prepared for a few recent input shapes (10, measured);
past that, every shape change prepares them again (ERNIE 3.0 Medium, 2 threads, one text at a
time: 15 ms on oneDNN against 17 ms on Paddle's native kernels while the lengths cycle through 10
values or fewer, 33 ms against 18 ms through 12). Timing one
shape over and over would hide this, so each timing cycles through more shapes than that: the
`short` cycle is one text of 10-21 tokens (12 lengths), the `long` cycle batches of 2-4 texts
0-24 tokens short of max_seq_len (12 shapes), reported per 8 texts.
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
    runner.run(typed[0])  # warm-up: allocations, first-run compilation
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
