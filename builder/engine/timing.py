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

Several engines are timed one after another by a `Race`, which holds one engine at a time. An
engine's short cycle is always timed. Its long cycle is timed only while the engine can still be
chosen, judged on two figures that cost no more per text than the cycle does on any engine: the
proof's batch of eight probe texts (a third of the cycle's length, twice its batch), and then the
least of two runs of the cycle's cheapest shape (four texts, the shortest), which leaves out the
cycle's longer texts, smaller batches and, on oneDNN, shape changes. An engine that loses to the
best engine so far by more than `MARGIN` even at such a figure keeps it as its long figure
(`long_timed` false) and is not timed further. Under `--expect short` no long figure decides, and
each engine keeps the estimate.

A race may hold each engine to a memory limit: what the process grows by from the race's start
(the engine loaded, then run on served shapes) is read after every run, and an engine past it is
stopped (`EngineOverMemory`). Served shapes are what grows memory: Paddle's oneDNN kernels keep
weights prepared for each input shape they meet (ERNIE 3.0 Medium: +1.7 GB over the short cycle's
12 shapes, on 300 MB of weights), and a server meeting the same shapes would hold the same.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from serving_core.encoder import FeedEncoder
from serving_core.windows import WindowSettings

from builder.phases import rss_mb

SHORT_TEXT = "明天早上七点提醒我给妈妈打电话然后把空调调到二十六度"  # CJK: one token a character, plus [CLS] and [SEP]
SHORT_LENGTHS = (14, 10, 16, 12, 18, 11, 15, 9, 17, 13, 19, 8)  # characters of SHORT_TEXT, one text a run
LONG_TEXT = "导航到北京西站然后播放周杰伦的歌" * 64
LONG_SHAPES = tuple((texts, cut) for cut in (0, 8, 16, 24) for texts in (4, 2, 3))  # (texts, tokens below
# max_seq_len) a run: 12 shapes
LONG_PER = 8  # long timings are per this many texts
BUDGET_S = {"short": 0.5, "long": 1.0}  # per engine and cycle: a moment, not a benchmark
MAX_RUNS = 60
ESTIMATE_SHAPE = (4, 24)  # of LONG_SHAPES: the most texts, the shortest: the cheapest per text
ESTIMATE_RUNS = 2  # runs of ESTIMATE_SHAPE: the least is the estimate (a first run is only slower)
MARGIN = 1.5  # an engine is timed on, unless its best case loses by more than this
MEMORY_PER_WEIGHT = 5  # a build's race lets an engine grow the process by this many times its weights' size,
MEMORY_FLOOR_MB = 256  # or by this much, if more (a small model's engine holds more than its weights)
EXPECT = ("short", "long", "mixed")


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


def estimate_long_ms(runner, shapes: dict[str, ShapeCycle]) -> float:
    """Per LONG_PER texts: the least of ESTIMATE_RUNS runs of ESTIMATE_SHAPE."""
    feeds = shapes["long"].feeds[LONG_SHAPES.index(ESTIMATE_SHAPE)]
    typed = {t.name: feeds[t.name].astype(t.dtype) for t in runner.signature.inputs}
    seconds = []
    for _ in range(ESTIMATE_RUNS):
        begin = time.perf_counter()
        runner.run(typed)
        seconds.append(time.perf_counter() - begin)
    return 1000 * LONG_PER * min(seconds) / ESTIMATE_SHAPE[0]


@dataclass(frozen=True)
class EngineTiming:
    """One engine's figures on served shapes."""

    engine: str
    short_ms: float  # median of one text of 8-19 tokens (SHORT_LENGTHS)
    long_ms: float  # median per LONG_PER max_seq_len texts, in batches of 2-4 (or the estimate, below)
    long_timed: bool = True  # False: long_ms is the estimate, the engine could not be chosen (Race)
    kernels: str = ""  # paddle: which of its kernels ("oneDNN", "native")

    def score(self, expect: str) -> float:
        """What the expected traffic minimises: the short or long figure, or their product for mixed
        (the same order as the geometric mean of the two figures relative to the fastest's)."""
        return {"short": self.short_ms, "long": self.long_ms, "mixed": self.short_ms * self.long_ms}[expect]

    def describe(self) -> str:
        kernels = f" ({self.kernels})" if self.kernels else ""
        long = f"{self.long_ms:.3g} ms" if self.long_timed else f"at least ~{self.long_ms:.3g} ms, not timed further"
        return f"{self.engine}{kernels} {self.short_ms:.3g} ms (1 short text) / {long} (8 x max_seq_len)"


class EngineOverMemory(Exception):
    """An engine grew the process past the race's memory limit on served shapes."""

    def __init__(self, engine: str, grown_mb: float, limit_mb: float):
        super().__init__(f"{engine} grew the build's memory by {grown_mb:.0f} MB on served shapes, past the "
                         f"limit of {limit_mb:.0f} MB ({MEMORY_PER_WEIGHT}x the model's weights); a server meeting "
                         "those shapes would hold as much")
        self.grown_mb, self.limit_mb = grown_mb, limit_mb


def memory_limit_mb(program) -> float:
    """MEMORY_PER_WEIGHT x the size of a program's weights (its parameters file, or the ONNX
    file), at least MEMORY_FLOOR_MB."""
    weights = program.params_file or program.model_file
    return max(MEMORY_FLOOR_MB, MEMORY_PER_WEIGHT * weights.stat().st_size / 2**20)


class _MemoryWatched:
    """A runner whose every run checks the process's growth against a limit."""

    def __init__(self, runner, engine: str, baseline_mb: float, limit_mb: float):
        self.signature, self._runner = runner.signature, runner
        self._engine, self._baseline_mb, self._limit_mb = engine, baseline_mb, limit_mb

    def run(self, feeds):
        result = self._runner.run(feeds)
        grown = rss_mb() - self._baseline_mb
        if grown > self._limit_mb:
            raise EngineOverMemory(self._engine, grown, self._limit_mb)
        return result


class Race:
    """Times engines one after another for the expected traffic (see the module's docstring)."""

    def __init__(self, tokenizer, expect: str, memory_limit_mb: float | None = None):
        from serving_core.errors import UserError

        if expect not in EXPECT:
            raise UserError(f"--expect {expect!r}: use short, long, mixed or a file of typical texts")
        self.tokenizer, self.expect = tokenizer, expect
        self.timings: list[EngineTiming] = []
        self.memory_limit_mb, self.baseline_mb = memory_limit_mb, rss_mb()

    def best(self, engines=None) -> EngineTiming | None:
        """The fastest so far for the expected traffic, of `engines` where given."""
        timed = [t for t in self.timings if engines is None or t.engine in engines]
        return min(timed, key=lambda t: t.score(self.expect)) if timed else None

    def time(self, engine: str, runner, kernels: str = "", probe_ms_per_8: float = 0.0) -> EngineTiming:
        """Time `runner`; `probe_ms_per_8`: its time for a batch of eight probe texts, where measured.
        Raises EngineOverMemory where the race has a memory limit and the engine passes it."""
        shapes = served_shapes(self.tokenizer, [t.name for t in runner.signature.inputs])
        if self.memory_limit_mb is not None:
            runner = _MemoryWatched(runner, f"{engine} ({kernels})" if kernels else engine, self.baseline_mb,
                                    self.memory_limit_mb)
        short = _median_ms_per_text(runner, shapes["short"], BUDGET_S["short"])
        leader = self.best()

        def can_win(long_ms: float) -> bool:
            bound = EngineTiming(engine, short, long_ms).score(self.expect)
            return leader is None or bound <= MARGIN * leader.score(self.expect)

        timing = None
        if self.expect != "short" and probe_ms_per_8 and not can_win(probe_ms_per_8 * LONG_PER / 8):
            timing = EngineTiming(engine, short, probe_ms_per_8 * LONG_PER / 8, False, kernels)
        elif self.expect == "short" or leader is not None:
            long = estimate_long_ms(runner, shapes)
            if self.expect == "short" or not can_win(long):
                timing = EngineTiming(engine, short, long, False, kernels)
        if timing is None:
            timing = EngineTiming(engine, short, LONG_PER * _median_ms_per_text(runner, shapes["long"],
                                                                                BUDGET_S["long"]), True, kernels)
        self.timings.append(timing)
        return timing
