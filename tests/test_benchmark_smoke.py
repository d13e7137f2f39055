"""The benchmark command still runs end to end (tiny settings; nothing about speed is asserted)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.server


def test_benchmark_run_writes_every_output(example_model, tmp_path):
    (tmp_path / "seq_cls_example").symlink_to(example_model)
    output = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--workdir", str(tmp_path), "--output", str(output),
         "--workloads", "seq_cls_short", "--systems", "bare_paddle", "triton_paddle", "direct_paddle_nohold",
         "floor_paddle", "simple_server_paddle",
         "--concurrency", "1", "2", "--seconds", "0.5", "--warmup", "0.2", "--requests", "8",
         "--perf-analyzer-stability", "1000"],  # a busy machine must not fail a run that asserts no speed
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((output / "results.json").read_text(encoding="utf-8"))
    points = {(r["system"], r["concurrency"]) for r in results["rows"]}
    systems = ("bare_paddle", "triton_paddle", "direct_paddle_nohold", "floor_paddle", "simple_server_paddle")
    assert points == {(s, c) for s in systems for c in (1, 2)}
    for row in results["rows"]:
        assert row["measurement"]["errors"] == 0 and row["measurement"]["texts_per_s"] > 0
        assert row["measurement"]["rss_mb"] > 0
    triton = next(r for r in results["rows"] if r["system"] == "triton_paddle")
    assert set(triton["measurement"]["steps"]) == {"ensemble", "tokenizer", "model", "postprocess"}  # by role
    # Triton's perf_analyzer drove the same server beside our load generator.
    assert triton["perf_analyzer"]["texts_per_s"] > 0 and triton["perf_analyzer"]["held_ratio"] > 0
    assert "perf_analyzer" in (output / "report.md").read_text(encoding="utf-8")
    assert all(t["identical_ids"] for t in results["tokenizer"])
    assert "| triton_paddle |" in (output / "report.md").read_text(encoding="utf-8")
    # The _nohold system served its own build, the direct model's batch hold off; no model step holds.
    held = [p for p in (tmp_path / "repositories").glob("*/seq_cls/*/config.pbtxt") if "hold_ms" in p.read_text()]
    assert sorted(p.relative_to(tmp_path / "repositories").parts[0] for p in held) == ["paddle", "paddle_floor"]
    # The floor served its own build: the direct model with the instant engine, accepted as built.
    floor = tmp_path / "repositories" / "paddle_floor" / "seq_cls" / "seq_cls_direct" / "1"
    assert (floor / "direct_model.py").is_file() and "InstantEngine" in (floor / "model.py").read_text()
    floor_row = next(r for r in results["rows"] if r["system"] == "floor_paddle" and r["concurrency"] == 1)
    assert floor_row["ratio_to_bare"] == 0.0 and floor_row["perf_analyzer"]["texts_per_s"] > 0
    assert "so at best" in next(t["detail"] for t in results["targets"] if t["target"].startswith("one 16-token"))
    assert (output / "plot.png").read_bytes()[:4] == b"\x89PNG"
