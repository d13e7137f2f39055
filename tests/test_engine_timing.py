"""Build-time engine timing on served shapes, and Paddle's kernels chosen by it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from builder.build import build
from builder.engine import timing
from builder.engine.timing import EngineTiming, Race, served_shapes
from builder.options import BuildOptions
from builder.triton.repository import read_build
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind
from serving_core.tokenization import ErnieTokenizer, TokenizerSettings

ONEDNN_CACHED_SHAPES = 10  # Paddle Inference's oneDNN keeps the kernels of this many input shapes


def test_each_timing_cycle_has_more_shapes_than_onednn_keeps(example_model):
    tokenizer = ErnieTokenizer.from_files(example_model / "vocab.txt", TokenizerSettings(max_seq_len=128))
    shapes = served_shapes(tokenizer, ["input_ids", "token_type_ids"])
    for name, cycle in shapes.items():
        distinct = {feeds["input_ids"].shape for feeds in cycle.feeds}
        assert len(distinct) == len(cycle.feeds) > ONEDNN_CACHED_SHAPES, (name, sorted(distinct))
        assert [feeds["input_ids"].shape[0] for feeds in cycle.feeds] == list(cycle.texts)
    assert max(f["input_ids"].shape[1] for f in shapes["long"].feeds) == tokenizer.settings.max_seq_len


class FirstRunSlow:
    """A runner on a clock of its own: the first run of each input shape takes `first` seconds,
    later runs `warm` (oneDNN on an AVX2 machine: 184 ms, then 42)."""

    def __init__(self, names, first=0.184, warm=0.042):
        self.signature = SimpleNamespace(inputs=[SimpleNamespace(name=n, dtype="int64") for n in names])
        self.first, self.warm, self.now, self.seen = first, warm, 0.0, set()

    def perf_counter(self):
        return self.now

    def run(self, feeds):
        shape = feeds["input_ids"].shape
        self.now += self.warm if shape in self.seen else self.first
        self.seen.add(shape)


def test_timing_measures_warm_shapes_not_their_first_run(example_model, monkeypatch):
    tokenizer = ErnieTokenizer.from_files(example_model / "vocab.txt", TokenizerSettings(max_seq_len=128))
    names = ["input_ids", "token_type_ids"]
    runner = FirstRunSlow(names)
    monkeypatch.setattr(timing, "time", runner)
    timed = Race(tokenizer, "mixed").time("first", runner)  # the first engine of a race: both cycles in full
    assert timed.long_timed
    assert timed.short_ms == pytest.approx(42.0)
    assert timed.long_ms == pytest.approx(timing.LONG_PER * 42.0 / 3)  # the median long shape holds 3 texts


def test_mixed_traffic_ranks_engines_by_both_figures_relative_to_the_fastest():
    a, b, c = EngineTiming("a", 1.0, 40.0), EngineTiming("b", 2.0, 10.0), EngineTiming("c", 4.0, 6.0)
    # relative to the fastest at each shape (short 1.0, long 6.0): a 1 x 6.67, b 2 x 1.67, c 4 x 1
    relative = {t.engine: (t.short_ms / 1.0) * (t.long_ms / 6.0) for t in (a, b, c)}
    by_score = [t.engine for t in sorted((a, b, c), key=lambda t: t.score("mixed"))]
    assert by_score == sorted("abc", key=relative.get) == ["b", "c", "a"]
    assert min((a, b, c), key=lambda t: t.score("short")) is a and min((a, b, c), key=lambda t: t.score("long")) is c


def test_a_paddle_build_serves_the_kernels_it_timed_faster(example_model, tmp_path):
    repository = tmp_path / "repo"
    build(example_model, repository, BuildOptions(task=Task.SEQ_CLS, name="intent", runtime=RuntimeKind.PADDLE),
          show_progress=False)
    spec, record = read_build(repository, "intent")
    proof = record["engine_proof"]
    assert [f["engine"] for f in proof["checked"]] == ["paddle (oneDNN)", "paddle (native kernels)"]
    assert all(f["difference"] <= proof["tolerance"] for f in proof["checked"]), proof
    assert spec.model.onednn is proof["onednn"]
    chosen = "oneDNN" if proof["onednn"] else "native CPU"
    assert proof["note"].startswith(f"Paddle Inference runs on its {chosen} kernels, the faster on served shapes")
