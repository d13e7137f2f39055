"""Where a build's time and memory go (builder.phases), and the race that times engines one at a
time without timing those that cannot be chosen (builder.engine.timing.Race)."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from builder import phases
from builder.engine import timing
from builder.engine.timing import LONG_PER, Race
from serving_core.tokenization import ErnieTokenizer, TokenizerSettings


class ClockedEngine:
    """A runner on a shared fake clock: each run costs `ms_per_token` per real token."""

    def __init__(self, clock, ms_per_token: float):
        self.signature = SimpleNamespace(inputs=[SimpleNamespace(name=n, dtype="int64")
                                                 for n in ("input_ids", "token_type_ids")])
        self.clock, self.ms_per_token, self.runs = clock, ms_per_token, []

    def run(self, feeds):
        ids = feeds["input_ids"]
        self.runs.append(ids.shape)
        self.clock.now += self.ms_per_token * float((ids != 0).sum()) / 1000


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def tokenizer(tmp_path):
    from builder.example.vocab import generate_vocab

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(generate_vocab([timing.SHORT_TEXT, timing.LONG_TEXT])) + "\n", encoding="utf-8")
    return ErnieTokenizer.from_files(vocab, TokenizerSettings(max_seq_len=128))


def test_an_engine_that_cannot_win_is_not_timed_on_the_long_cycle(tokenizer, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    race = Race(tokenizer, "mixed")
    fast, slow = ClockedEngine(clock, 0.1), ClockedEngine(clock, 1.0)
    first = race.time("fast", fast)
    second = race.time("slow", slow)
    assert first.long_timed and not second.long_timed
    long_runs = [shape for shape in slow.runs if shape[1] > 32]
    assert len(long_runs) == timing.ESTIMATE_RUNS  # the estimate, not the cycle
    assert race.best() == first
    # the estimate is never above what the cycle would have measured: the rule still picks right
    cycle = LONG_PER * timing._median_ms_per_text(slow, timing.served_shapes(tokenizer, ["input_ids",
                                                                                      "token_type_ids"])["long"], 1.0)
    assert second.long_ms <= cycle
    assert second.score("mixed") > timing.MARGIN * first.score("mixed")


def test_the_probe_batch_bound_skips_even_the_estimate(tokenizer, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    race = Race(tokenizer, "long")
    race.time("fast", ClockedEngine(clock, 0.1))
    slow = ClockedEngine(clock, 1.0)
    timed = race.time("slow", slow, probe_ms_per_8=1000.0)
    assert not timed.long_timed and timed.long_ms == pytest.approx(1000.0 * LONG_PER / 8)
    assert all(shape[1] <= 32 for shape in slow.runs)  # its short cycle only


def test_an_engine_that_can_win_is_timed_in_full(tokenizer, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    race = Race(tokenizer, "mixed")
    race.time("a", ClockedEngine(clock, 0.2))
    close = race.time("b", ClockedEngine(clock, 0.19), probe_ms_per_8=1.0)
    assert close.long_timed and race.best().engine == "b"


def test_short_traffic_times_no_long_cycle(tokenizer, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    race = Race(tokenizer, "short")
    assert not race.time("only", ClockedEngine(clock, 0.1)).long_timed


def test_phases_add_up_and_measure_their_children():
    clock = phases.PhaseClock()
    phases.release_memory()  # as each phase does first: what earlier tests let go is not the phase's to lose
    before_mb = phases._status_kb("VmRSS") // 1024
    with clock.running():
        with phases.phase("work"):
            blob = bytearray(64 * 2**20)
            blob[::4096] = b"x" * len(blob[::4096])
        with phases.phase("child"):
            grow = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"
            done = phases.run_child([sys.executable, "-c", grow], timeout=60)
        with phases.phase("work"):
            pass
    del blob
    assert done.returncode == 0
    names = [p.name for p in clock.phases]
    assert names == ["work", "child"]
    work, child = clock.phases
    assert work.process_mb >= before_mb + 60 and child.child_mb >= 200
    assert child.peak_mb >= child.child_mb and clock.peak_mb == max(p.peak_mb for p in clock.phases)
    record = clock.to_json()
    assert [p["name"] for p in record["phases"]] == names and record["process_peak_mb"] >= 64


def test_a_child_past_its_time_is_killed():
    import subprocess

    with pytest.raises(subprocess.TimeoutExpired):
        phases.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


def test_a_child_started_ahead_and_not_needed_is_stopped():
    child = phases.ChildProcess([sys.executable, "-c", "import sys; sys.stdin.readline()"])
    child.kill()
    assert child._process.returncode is not None


class Hoarder(ClockedEngine):
    """An engine that keeps memory for every shape it meets, as Paddle's oneDNN kernels do."""

    def __init__(self, clock):
        super().__init__(clock, 0.1)
        self.kept = {}

    def run(self, feeds):
        super().run(feeds)
        shape = feeds["input_ids"].shape
        if shape not in self.kept:
            self.kept[shape] = bytearray(32 * 2**20)
            self.kept[shape][::4096] = b"x" * len(self.kept[shape][::4096])


def test_an_engine_that_grows_past_the_memory_limit_is_stopped(tokenizer, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    race = Race(tokenizer, "mixed", memory_limit_mb=150)
    hoarder = Hoarder(clock)
    with pytest.raises(timing.EngineOverMemory, match="past the limit of 150 MB"):
        race.time("hoarder", hoarder)
    assert 4 <= len(hoarder.kept) <= 8  # stopped within a run of passing the limit
    assert race.timings == []
    hoarder.kept.clear()
    assert race.time("lean", ClockedEngine(clock, 0.1)).long_timed  # the limit is on growth from the race's start
