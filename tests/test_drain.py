"""Stopping a live server answers every request in flight: `builder serve` on SIGTERM, and the
drain a container's preStop hook runs (`python -m serving_core.drain`), on every task."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from builder.build import build
from builder.example import intents
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from clients.intent_slot import IntentSlotClient
from clients.qa import QAClient
from clients.seq_cls import SeqClsClient
from clients.token_cls import TokenClsClient
from serving_core.drain import NOT_READY_MODEL
from serving_core.health import index_states
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from .test_serve_cli import _serve, _wait_for_serving

pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parents[1]

LONG_TEXT = "，".join(t for t, _, _ in intents.annotated_examples(3)[:12])  # about 100 characters
BATCH = 64  # texts per request (the most one may carry): 8 such requests take seconds on two cores


def test_a_model_listed_once_per_version_has_its_liveliest_state():
    """Triton's index lists a published `_direct` model once per version directory; the drain must
    see it READY while any version is (the last entry alone said UNAVAILABLE, so it was not drained)."""
    index = [{"name": "intent", "version": "1", "state": "READY"},
             {"name": "intent_direct", "version": "2", "state": "READY"},
             {"name": "intent_direct", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
             {"name": "other_direct", "version": "1", "state": "UNLOADING"},
             {"name": "other_direct", "version": "2", "state": "UNAVAILABLE"},
             {"name": "never_loaded"}]
    assert index_states(index) == {"intent": "READY", "intent_direct": "READY", "other_direct": "UNLOADING",
                                   "never_loaded": ""}


@pytest.fixture(scope="module")
def repository(static_export, token_cls_model, qa_model, intent_slot_model, tmp_path_factory):
    """One repository serving the four tasks (engine pinned: engine choice is not what is tested)."""
    repo = tmp_path_factory.mktemp("drain") / "models"
    for name, model, task in (("intent", static_export, Task.SEQ_CLS), ("ner", token_cls_model, Task.TOKEN_CLS),
                              ("qa", qa_model, Task.QA), ("slots", intent_slot_model, Task.INTENT_SLOT)):
        build(model, repo, BuildOptions(task=task, name=name, runtime=RuntimeKind.ONNXRUNTIME), show_progress=False)
    return repo


def _requests(url: str) -> list:
    """Two large requests per task, each returning the number of answers it got."""
    texts = [LONG_TEXT] * BATCH
    calls = [lambda: len(SeqClsClient(url, "intent").classify(texts)),
             lambda: len(TokenClsClient(url, "ner").entities(texts)),
             lambda: len(QAClient(url, "qa").answer(["打开什么"] * BATCH, texts)),
             lambda: len(IntentSlotClient(url, "slots").parse(texts))]
    return calls * 2


class _InFlight:
    """The requests, each in its own thread; `answers` holds a count or the error of each."""

    def __init__(self, url: str):
        self.answers: dict[int, object] = {}
        self.threads = [threading.Thread(target=self._run, args=(i, call)) for i, call in enumerate(_requests(url))]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int, call) -> None:
        try:
            self.answers[index] = call()
        except Exception as exc:  # noqa: BLE001 - the failure is the test's finding
            self.answers[index] = repr(exc)

    def join(self) -> dict[int, object]:
        for thread in self.threads:
            thread.join(timeout=600)
        return self.answers


def _prestop_command(http_url: str) -> list[str]:
    """The Kubernetes Deployment's preStop command, pointed at `http_url`; a shorter delay, and time
    enough for a machine with other work beside it."""
    import yaml

    documents = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml").read_text())
    (container,) = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"]
    command = list(container["lifecycle"]["preStop"]["exec"]["command"])
    command[0] = sys.executable
    command[command.index("--url") + 1] = http_url
    command[command.index("--delay") + 1] = "0.5"
    command[command.index("--timeout") + 1] = "300"
    return command


def _ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):  # 400 (not ready), or not listening yet
        return False


def _wait_until_busy(server_pid: int) -> None:
    """Until the steps are working (the requests reached the server), without a fixed sleep."""
    import psutil

    deadline = time.monotonic() + 120
    while sum(p.cpu_percent(0.2) for p in psutil.Process(server_pid).children(recursive=True)) < 20:
        assert time.monotonic() < deadline, "the requests never reached the server"


def test_sigterm_answers_every_large_request_in_flight_on_every_task_then_exits_0(repository):
    ports = ServerPorts.free()
    with _serve(repository, ports, "--drain-delay", "1", "--drain-timeout", "300", "--probe-interval", "0") as process:
        _wait_for_serving(process)
        in_flight = _InFlight(f"127.0.0.1:{ports.grpc}")
        _wait_until_busy(process.pid)
        process.send_signal(signal.SIGTERM)
        assert len(in_flight.answers) < 8, "every request was answered before the signal: nothing was in flight"
        deadline = time.monotonic() + 60
        while _ready(f"127.0.0.1:{ports.http}"):  # not ready soon after the signal, requests still running
            assert time.monotonic() < deadline, "the server still reports ready"
            time.sleep(0.1)
        output, _ = process.communicate(timeout=600)
    answers = in_flight.join()
    assert answers == {i: BATCH for i in range(8)}, answers
    assert process.returncode == 0, output[-3000:]
    assert "every request in flight was answered" in output, output[-3000:]


def test_the_prestop_drain_answers_what_is_in_flight_and_needs_the_admin_key(repository):
    key = "drain-test-key"
    with TritonServer(repository, ServerPorts.free(), admin_key=key) as server:
        command = _prestop_command(server.http_url)
        refused = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                 env={k: v for k, v in os.environ.items() if k != "ERNIE_SERVING_ADMIN_KEY"})
        assert refused.returncode == 2 and "ERNIE_SERVING_ADMIN_KEY is not set" in refused.stderr
        assert _ready(server.http_url)

        in_flight = _InFlight(server.grpc_url)
        _wait_until_busy(server.pid)
        assert len(in_flight.answers) < 8, "every request was answered before the drain: nothing was in flight"
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "ERNIE_SERVING_ADMIN_KEY": key})
        answers = in_flight.join()
        assert done.returncode == 0, done.stderr
        assert answers == {i: BATCH for i in range(8)}, answers
        assert "drained 4 ensemble(s)" in done.stderr
        assert not _ready(server.http_url)  # until Triton is stopped: load balancers keep away
        with pytest.raises(Exception, match="intent"):  # an ensemble takes no new request
            SeqClsClient(server.grpc_url, "intent").classify(["打开空调"])
        assert NOT_READY_MODEL not in [p.name for p in (server.repository.iterdir())]  # nothing written there


def test_a_container_command_run_under_the_drain_answers_what_is_in_flight_on_sigterm(repository):
    """The Dockerfile runs Triton under `python -m serving_core.drain -- tritonserver ...`: `docker
    stop`'s SIGTERM drains it first, then stops it; here with the bundled tritonserver's command."""
    key = "drain-test-key"
    server = TritonServer(repository, ServerPorts.free(), admin_key=key)
    process = subprocess.Popen([sys.executable, "-m", "serving_core.drain", "--url", server.http_url,
                                "--delay", "0.5", "--timeout", "300", "--", *server.command()],
                               env={**server.environment(), "ERNIE_SERVING_ADMIN_KEY": key},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not _ready(server.http_url):
            assert process.poll() is None and time.monotonic() < deadline, "the server never got ready"
            time.sleep(0.5)
        in_flight = _InFlight(server.grpc_url)
        _wait_until_busy(process.pid)
        process.send_signal(signal.SIGTERM)
        assert len(in_flight.answers) < 8, "every request was answered before the signal: nothing was in flight"
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert in_flight.join() == {i: BATCH for i in range(8)}
    assert process.returncode == 0, output[-3000:]
    assert "every request in flight was answered" in output

