"""The floor system: a direct build whose engine answers instantly, to measure what serving adds.

A request to the floor costs everything a request to the direct model costs except the engine
(benchmarks/floor_model.py), so on the same machine:
- one request can at best be answered in the bare engine's time plus the floor's: the least
  p50 over bare a server of this design can show is (bare + floor) / bare;
- at c16 every text costs the engine E = bare CPU cores / bare texts/s CPU-seconds, and the
  server S = floor CPU cores / floor texts/s more (the load generator's CPU left out on both),
  so the served/bare ratio, held to the CPU the load generator leaves, is at most E / (E + S).
"""
from __future__ import annotations

import shutil
from pathlib import Path

FLOOR_MODEL = Path(__file__).with_name("floor_model.py")


def install_floor(repository: Path, task: str) -> Path:
    """Give the direct model of the build at `repository` (built with --direct) the instant
    engine, and accept the edit (`builder check --accept`); returns its version directory."""
    from builder.triton.check import check_location
    from builder.triton.repository import read_build
    from builder.triton.target import direct_model_name

    spec, _ = read_build(repository, task)
    version = spec.version_dir(repository, direct_model_name(task))
    if not (version / "direct_model.py").exists():
        (version / "model.py").rename(version / "direct_model.py")
    shutil.copyfile(FLOOR_MODEL, version / "model.py")
    report = check_location(repository, accept_edits=True)
    if not report.ok:
        raise RuntimeError(f"the floor build does not check: {report.summary()}")
    return version


def c1_floor_ratio(bare_p50_ms: float, floor_p50_ms: float) -> float:
    """The least p50 / bare a server that adds the floor's time can show for one request."""
    return (bare_p50_ms + floor_p50_ms) / bare_p50_ms


def c16_ceiling(bare: dict, floor: dict) -> float:
    """The most served/bare (held) at the same concurrency: E / (E + S), E and S the CPU-seconds
    per text of the bare engine and of the floor server (measurements: texts_per_s, cpu_cores)."""
    engine = bare["cpu_cores"] / bare["texts_per_s"]
    server = floor["cpu_cores"] / floor["texts_per_s"]
    return engine / (engine + server)
