"""`builder serve` as a user runs it: start, answer, stop cleanly on Ctrl-C (SIGINT)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from builder.build import build
from builder.options import BuildOptions
from builder.server import ServerPorts
from clients.seq_cls import SeqClsClient
from serving_core.interface import Task

pytestmark = pytest.mark.server


def test_serve_answers_and_stops_on_ctrl_c(static_export, tmp_path):
    repo = tmp_path / "repo"
    build(static_export, repo, BuildOptions(task=Task.SEQ_CLS, name="intent"), show_progress=False)
    ports = ServerPorts.free()
    process = subprocess.Popen([sys.executable, "-m", "builder", "serve", str(repo), "--grpc-port", str(ports.grpc),
                                "--http-port", str(ports.http), "--metrics-port", str(ports.metrics)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               # as from a terminal: a background job (CI started with `&`)
                               # inherits SIGINT ignored, and Python then never raises Ctrl-C
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "serving" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, "builder serve exited early"
        assert f"localhost:{ports.grpc}" in line
        assert SeqClsClient(f"localhost:{ports.grpc}", "intent").classify(["打开空调"])[0].label_name
    finally:
        process.send_signal(signal.SIGINT)
        # communicate() keeps draining the pipe: a full pipe would block the stopping process.
        # The stop path is Triton's graceful stop, then SIGKILL after 30 s.
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-2000:]


def test_serve_reports_a_broken_repository(tmp_path):
    repo = tmp_path / "repo" / "broken" / "1"
    repo.mkdir(parents=True)
    (repo.parent / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: 1\n')
    (repo / "model.py").write_text("raise RuntimeError('this model cannot load')\n")
    ports = ServerPorts.free()
    out = subprocess.run([sys.executable, "-m", "builder", "serve", str(tmp_path / "repo"), "--grpc-port",
                          str(ports.grpc), "--http-port", str(ports.http), "--metrics-port", str(ports.metrics)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 3
    assert "this model cannot load" in out.stderr
