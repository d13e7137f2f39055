"""Build-time engine timing on served shapes, and Paddle's kernels chosen by it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from builder.build import build
from builder.engine import timing
from builder.engine.timing import relative_scores, served_shapes, time_runner
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
    short_ms, long_ms = time_runner(runner, served_shapes(tokenizer, names))
    assert short_ms == pytest.approx(42.0)
    assert long_ms == pytest.approx(timing.LONG_PER * 42.0 / 3)  # the median long shape holds 3 texts


def test_scores_are_relative_to_the_fastest_at_each_shape():
    scores = relative_scores({"a": (1.0, 40.0), "b": (2.0, 10.0)}, "mixed")
    assert scores == pytest.approx({"a": 2.0, "b": 2 ** 0.5})
    assert relative_scores({"a": (1.0, 40.0), "b": (2.0, 10.0)}, "short") == {"a": 1.0, "b": 2.0}


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
