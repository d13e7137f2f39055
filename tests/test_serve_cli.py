"""`builder serve` as a user runs it: start, answer, stop cleanly on Ctrl-C (SIGINT)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from benchmarks.common import descendants_running
from builder.build import build
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts
from clients.seq_cls import SeqClsClient
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind


pytestmark = pytest.mark.server


def test_serve_answers_and_stops_on_ctrl_c(static_export, tmp_path):
    repo = tmp_path / "repo"
    build(static_export, repo, BuildOptions(task=Task.SEQ_CLS, name="intent", runtime=RuntimeKind.ONNXRUNTIME),
        show_progress=False)
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
        while not line.startswith("serving ") and time.monotonic() < deadline:  # the banner
            line = process.stdout.readline()
            assert line or process.poll() is None, "builder serve exited early"
        assert f"127.0.0.1:{ports.grpc}" in line
        assert SeqClsClient(f"127.0.0.1:{ports.grpc}", "intent").classify(["打开空调"])[0].label_name
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


@contextlib.contextmanager
def _serve(repo, ports, *extra):
    """`builder serve` as a child; killed (with its server) whatever the test does."""
    process = subprocess.Popen([sys.executable, "-m", "builder", "serve", str(repo), "--grpc-port", str(ports.grpc),
                                "--http-port", str(ports.http), "--metrics-port", str(ports.metrics), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:  # SIGTERM: a job a shell starts in the background ignores SIGINT
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_for_serving(process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 180
    line = ""
    while not line.startswith("serving "):
        assert time.monotonic() < deadline, "builder serve never said it was serving"
        line = process.stdout.readline()
        assert line or process.poll() is None, "builder serve exited early"


def _tritonserver_of(process: subprocess.Popen, timeout: float = 120) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(process.pid).children():
            with contextlib.suppress(psutil.Error):  # a child that has just exited
                if child.name() == "tritonserver":
                    return child
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    raise AssertionError("no tritonserver was started")


def _process_group(pgid: int) -> list[psutil.Process]:
    """The live processes of process group `pgid`."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)  # (a zombie is dead, waiting for init to reap it)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return members


@pytest.fixture(scope="module")
def repo(static_export, tmp_path_factory):
    repo = tmp_path_factory.mktemp("serve") / "repo"
    build(static_export, repo, BuildOptions(task=Task.SEQ_CLS, name="intent", runtime=RuntimeKind.ONNXRUNTIME),
        show_progress=False)
    return repo


def test_the_server_dies_with_a_killed_builder_serve(repo):
    with _serve(repo, ServerPorts.free()) as process:
        _wait_for_serving(process)
        server = _tritonserver_of(process)
        deadline = time.monotonic() + 60
        while len(server.children()) < 3:  # tokenizer, model and postprocess stubs
            assert time.monotonic() < deadline, server.children()
            time.sleep(0.2)
        tree = [server, *server.children(recursive=True)]
        process.kill()
        process.wait(timeout=30)
        assert psutil.wait_procs(tree, timeout=120)[1] == [], "tritonserver or its stubs outlived builder serve"


def test_sigterm_during_start_up_stops_the_server(repo, tmp_path):
    """A model that takes 20 s to initialize keeps the server starting while SIGTERM arrives."""
    import shutil

    slow_repo = tmp_path / "repo"
    shutil.copytree(repo, slow_repo)
    (slow_repo / "slow" / "1").mkdir(parents=True)
    (slow_repo / "slow" / "config.pbtxt").write_text(
        'name: "slow"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "X", data_type: TYPE_FP32, dims: [1] }]\n'
        'output [{ name: "Y", data_type: TYPE_FP32, dims: [1] }]\n')
    (slow_repo / "slow" / "1" / "model.py").write_text(
        "import time\n\n\nclass TritonPythonModel:\n    def initialize(self, args):\n        time.sleep(20)\n")
    with _serve(slow_repo, ServerPorts.free()) as process:
        server = _tritonserver_of(process)
        deadline = time.monotonic() + 120
        while not descendants_running(server.pid, "/slow/"):  # the slow model loads
            assert time.monotonic() < deadline and process.poll() is None, "the slow model never started loading"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    assert "Ctrl-C stops" not in output  # the banner never came
    assert psutil.wait_procs([server], timeout=60)[1] == []
    assert _process_group(server.pid) == [], "backend stubs outlived the stopped server"


def test_busy_ports_are_refused_before_anything_claims_ready(repo):
    ports = ServerPorts.free()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.grpc))
        taken.listen()
        out = subprocess.run([sys.executable, "-m", "builder", "serve", str(repo), "--grpc-port", str(ports.grpc),
                              "--http-port", str(ports.http), "--metrics-port", str(ports.metrics)],
                             capture_output=True, text=True, timeout=180)
    assert out.returncode == 3
    assert "Ctrl-C stops" not in out.stdout
    assert f"port {ports.grpc} on 127.0.0.1 is in use" in out.stderr


def test_builder_serve_exits_with_the_reason_when_a_step_cannot_come_back(repo, tmp_path):
    """A killed model step whose reload fails too: builder serve tries, then exits 3 saying why."""
    import shutil

    broken = tmp_path / "repo"
    shutil.copytree(repo, broken)
    with _serve(broken, ServerPorts.free(), "--probe-interval", "1") as process:
        _wait_for_serving(process)
        (model_py,) = broken.glob("intent_model/1/model.py")
        model_py.write_text("raise RuntimeError('this step cannot load any more')\n")
        (stub,) = descendants_running(process.pid, "intent_model")
        stub.kill()
        output, _ = process.communicate(timeout=300)
    assert process.returncode == 3, output[-3000:]
    assert "reloading intent_model" in output
    assert "still fails after 3 reloads" in output
