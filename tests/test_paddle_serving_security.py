"""The Paddle Serving service under attack and at shutdown: request tensors are never
unpickled (gRPC and HTTP), both ports bind loopback, requests are capped, SIGTERM drains."""
from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import pickle
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from builder.build import build
from builder.options import BuildOptions
from builder.paddle_serving.server import PipelineService
from builder.serving.process import port_in_use
from serving_core.interface import Task

from .pipeline_attack import Payload

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def service_dir(example_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("ps_security")
    build(example_model, output, BuildOptions(task=Task.SEQ_CLS, name="intent", target="paddle-serving"),
          show_progress=False)
    return output / "intent"


@pytest.fixture(scope="module")
def service(service_dir):
    with PipelineService(service_dir) as running:
        yield running


def _post(service, body: dict, timeout: float = 60) -> dict:
    request = urllib.request.Request(f"http://{service.http_url}/intent/prediction",
                                     data=json.dumps(body, ensure_ascii=False).encode(),
                                     headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=timeout).read())


def _texts(n: int, text: str = "打开空调") -> dict:
    return {"key": ["text"], "value": [json.dumps([text] * n, ensure_ascii=False)]}


def test_a_pickled_tensor_over_grpc_runs_nothing(service, tmp_path):
    marker = tmp_path / "pwned-grpc"
    out = subprocess.run([sys.executable, "-m", "tests.pipeline_attack", service.url, str(marker)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    reply = json.loads(out.stdout)
    assert reply["err_no"] == 400 and "tensors are not accepted" in reply["err_msg"]
    assert not marker.exists()
    assert _post(service, _texts(1))["err_no"] == 0


def test_a_pickled_tensor_over_http_runs_nothing(service, tmp_path):
    marker = tmp_path / "pwned-http"
    tensor = {"name": "text_tensor", "elem_type": 13, "shape": [1],
              "byte_data": base64.b64encode(pickle.dumps(Payload(str(marker)))).decode()}
    reply = _post(service, {**_texts(1), "tensors": [tensor]})
    assert reply["err_no"] == 400 and "tensors are not accepted" in reply["err_msg"]
    assert not marker.exists()
    assert _post(service, _texts(1))["err_no"] == 0


def test_both_ports_listen_on_loopback_only(service):
    listening = [c for c in psutil.Process(service.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in (service.rpc_port, service.http_port)]
    assert {c.laddr.port for c in listening} == {service.rpc_port, service.http_port}
    assert {c.laddr.ip.removeprefix("::ffff:") for c in listening} == {"127.0.0.1"}


@pytest.mark.parametrize("body, error", [
    (_texts(65), "at most 64"),
    (_texts(1, "\x00\x01"), "control"),
    ({"key": ["text", "extra"], "value": ["[\"a\"]"]}, "keys but"),
])
def test_bad_requests_are_refused_and_the_service_keeps_serving(service, body, error):
    reply = _post(service, body)
    assert reply["err_no"] == 400 and error in reply["err_msg"]
    assert _post(service, _texts(1))["err_no"] == 0


def test_a_huge_text_is_cut_and_flagged(service):
    reply = _post(service, _texts(1, "打开空调" * 250_000))
    assert reply["err_no"] == 0
    (answer,) = json.loads(dict(zip(reply["key"], reply["value"]))["result"])
    assert answer["truncated"] is True


def test_sigterm_drains_requests_in_flight_and_frees_both_ports(service_dir):
    service = PipelineService(service_dir)
    service.start()
    try:
        service.wait_ready()
        log = service_dir / "PipelineServingLogs" / "pipeline.log"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            body = {**_texts(64, "导航到北京西站" * 20), "logid": 4242}
            pending = pool.submit(_post, service, body, 300)
            deadline = time.monotonic() + 120
            while "log_id=4242" not in log.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.05)
            service.stop(timeout=120)  # SIGTERM, while the request is being answered
            reply = pending.result(timeout=300)
        assert reply["err_no"] == 0, reply
        assert len(json.loads(dict(zip(reply["key"], reply["value"]))["result"])) == 64
        assert service.returncode == 0
        assert not port_in_use("127.0.0.1", service.rpc_port) and not port_in_use("127.0.0.1", service.http_port)
    finally:
        service.stop()


def test_an_oversized_http_body_is_refused_unread(service):
    """The gateway answers 413 on the headers alone: the 9 MB body is never read."""
    host, port = service.http_url.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/intent/prediction")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(9 * 1024 * 1024))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    assert _post(service, _texts(1))["err_no"] == 0
