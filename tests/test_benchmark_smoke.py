"""The benchmark commands still run (tiny settings; nothing about speed is asserted)."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.server


def test_seq_cls_benchmark_runs(example_model, tmp_path):
    (tmp_path / "seq_cls_example").symlink_to(example_model)
    out = subprocess.run([sys.executable, "-m", "benchmarks.seq_cls_server_vs_bare", "--requests", "2",
                          "--batch-size", "4", "--workdir", str(tmp_path), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| triton_c1 |" in out.stdout and (tmp_path / "r.json").is_file()
