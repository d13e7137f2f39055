"""Hostile traffic and faults against a real tritonserver: checked requests, bounded work,
restricted admin APIs, loopback only, and a killed step that comes back."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from benchmarks.common import descendants_running
from builder.build import build
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.serving.supervisor import Supervisor
from builder.triton.config import BatchingOptions
from clients.triton import bytes_input
from serving_core.health import probe
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind


pytestmark = pytest.mark.server
HEALTH_SCRIPT = Path(__file__).resolve().parent.parent / "serving_core" / "health.py"


@pytest.fixture(scope="module")
def repository(example_model, token_cls_model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("hostile") / "models"
    build(example_model, repo, BuildOptions(task=Task.SEQ_CLS, name="intent"), show_progress=False)
    # A long batching window: concurrent requests to the model step surely share one execute().
    build(example_model, repo, BuildOptions(task=Task.SEQ_CLS, name="batched", runtime=RuntimeKind.ONNXRUNTIME,
                                            model_batching=BatchingOptions(max_queue_delay_us=300_000)),
          show_progress=False)
    build(token_cls_model, repo, BuildOptions(task=Task.TOKEN_CLS, name="ner"), show_progress=False)
    return repo


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, ServerPorts.free()) as running:
        yield running


def _stub_pids(server, model: str) -> list[int]:
    """The Python backend stubs of `model` that this server started."""
    return [p.pid for p in descendants_running(server.pid, "triton_python_backend_stub", f"/{model}/")]


def _feeds(client, step: str, ids: np.ndarray) -> list[grpcclient.InferInput]:
    metadata = client.get_model_metadata(step, as_json=True)
    inputs = []
    for item in metadata["inputs"]:
        value = ids if item["name"] == "input_ids" else np.zeros_like(ids)
        value = value.astype(np.int32 if item["datatype"] == "INT32" else np.int64)
        tensor = grpcclient.InferInput(item["name"], list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def _classify(client, text: str, model: str = "intent") -> str:
    return client.infer(model, [bytes_input("TEXT", [text])]).as_numpy("label_name").ravel()[0].decode()


@pytest.mark.parametrize("bad_id", [10 ** 9, -(10 ** 9), 5000, 100_000])
def test_out_of_range_ids_get_an_error_and_the_step_keeps_serving(server, bad_id):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    expected = _classify(client, "打开空调")
    stubs = _stub_pids(server, "intent_model")
    with pytest.raises(InferenceServerException, match="outside"):
        client.infer("intent_model", _feeds(client, "intent_model", np.array([[1, bad_id, 2]])))
    assert _classify(client, "打开空调") == expected
    assert _stub_pids(server, "intent_model") == stubs  # the same stub: nothing crashed or restarted


def test_feeds_of_wrong_shape_or_length_are_refused(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="positions"):
        client.infer("intent_model", _feeds(client, "intent_model", np.ones((1, 4000), dtype=np.int64)))
    ids = grpcclient.InferInput("input_ids", [1, 3], "INT64")
    ids.set_data_from_numpy(np.array([[1, 5, 2]], dtype=np.int64))
    types = grpcclient.InferInput("token_type_ids", [1, 2], "INT64")
    types.set_data_from_numpy(np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(InferenceServerException):
        client.infer("intent_model", [ids, types])
    assert _classify(client, "打开空调")


def test_a_bad_request_fails_alone_in_its_dynamic_batch(server):
    """Good and bad requests sent together to the model step share a batch; only the bad fail."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tokenized = client.infer("batched_tokenizer", [bytes_input("TEXT", ["打开空调"])])
    ids = tokenized.as_numpy("input_ids")
    alone = client.infer("batched_model", _feeds(client, "batched_model", ids))
    output = client.get_model_metadata("batched_model", as_json=True)["outputs"][0]["name"]
    expected = alone.as_numpy(output)
    bad = ids.copy()
    bad[0, 1] = 10 ** 9

    def send(feed):
        try:
            return grpcclient.InferenceServerClient(server.grpc_url).infer(
                "batched_model", _feeds(client, "batched_model", feed)).as_numpy(output)
        except InferenceServerException as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(send, [ids if i % 3 else bad for i in range(12)]))
    for index, result in enumerate(results):
        if index % 3:
            assert isinstance(result, np.ndarray), result
            np.testing.assert_allclose(result, expected, atol=1e-5)
        else:
            assert isinstance(result, InferenceServerException) and "outside" in result.message()
    # Concurrent requests do share executions. (Checked on good requests: Triton reports no
    # statistics for an execution in which any response was an error.)
    def counts():
        stats = client.get_inference_statistics("batched_model", as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    inferences, executions = counts()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(isinstance(r, np.ndarray) for r in pool.map(send, [ids] * 8))
    after = counts()
    assert after[0] - inferences == 8 and after[1] - executions < 8


@pytest.mark.parametrize("text", ["\x00", "\x00\x00\x01\x7f", " \u200b\x00\n"])
def test_control_only_text_is_refused(server, text):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="control"):
        client.infer("intent", [bytes_input("TEXT", [text])])
    assert _classify(client, "打开空调")


def test_huge_texts_are_cut_flagged_and_bounded(server):
    """A 10 MB seq_cls text and a 1 MB token_cls text are answered, flagged truncated, and the
    server's memory stays bounded."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tree = psutil.Process(server.pid)

    def rss() -> int:
        return sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)])

    before = rss()
    seq = client.infer("intent", [bytes_input("TEXT", ["打开空调" * 2_500_000])], client_timeout=120)
    assert seq.as_numpy("truncated").ravel().tolist() == [True]
    ner = client.infer("ner", [bytes_input("TEXT", ["播放周杰伦的稻香，" * 111_112])], client_timeout=120)
    assert ner.as_numpy("truncated").ravel().tolist() == [True]
    assert rss() - before < 1.5 * 2 ** 30  # before the cut: 1.3 GB -> 11.6 GB for the 1 MB text
    assert _classify(client, "打开空调")


def test_admin_apis_need_the_key(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for call in (client.get_model_repository_index, lambda: client.unload_model("intent"),
                 client.get_system_shared_memory_status,
                 lambda: client.register_system_shared_memory("x", "/triton_python_backend_shm_region_1", 64),
                 lambda: client.update_log_settings({"log_verbose_level": 1}),
                 client.get_trace_settings):
        with pytest.raises(InferenceServerException, match="restricted"):
            call()
    assert client.get_model_repository_index(headers=server.admin_headers).models
    assert client.is_model_ready("intent")


def test_every_port_listens_on_loopback_only(server):
    ports = {server.ports.grpc, server.ports.http, server.ports.metrics}
    listening = [c for c in psutil.Process(server.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    assert {c.laddr.port for c in listening} == ports
    assert {c.laddr.ip.removeprefix("::ffff:") for c in listening} == {"127.0.0.1"}  # gRPC: v4-mapped


def test_a_killed_step_is_reloaded_and_answers_again(server):
    """kill -9 of the model step's stub: the probe sees the dead step, the supervisor reloads it."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    expected = _classify(client, "播放周杰伦的花心")
    supervisor = Supervisor(server)
    assert supervisor.check() == {"batched": None, "intent": None, "ner": None}
    (stub,) = _stub_pids(server, "intent_model")
    killed = time.monotonic()
    os.kill(stub, signal.SIGKILL)
    with pytest.raises(InferenceServerException, match="not healthy"):
        for _ in range(50):  # the server notices the dead stub within a moment
            _classify(client, "播放周杰伦的花心")
            time.sleep(0.1)
    # The container's liveness probe (standard library only, as deploy/ runs it) sees it too.
    liveness = subprocess.run([sys.executable, "-I", str(HEALTH_SCRIPT), "--url", server.http_url],
                              capture_output=True, text=True, timeout=120,
                              env={"ERNIE_SERVING_ADMIN_KEY": server.admin_key, "PATH": os.environ["PATH"]})
    assert liveness.returncode == 1 and "not healthy" in liveness.stderr
    results = supervisor.check()
    assert results["intent"] and "not healthy" in results["intent"]
    assert _classify(client, "播放周杰伦的花心") == expected
    print(f"kill -9 to right answers again: {time.monotonic() - killed:.1f} s")
    assert supervisor.recoveries == 1
    assert probe(f"http://{server.http_url}", server.admin_http_headers) == {"batched": None, "intent": None,
                                                                              "ner": None}


def test_rejections_and_truncations_are_counted_in_the_metrics(server):
    import urllib.request

    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException):
        client.infer("intent_model", _feeds(client, "intent_model", np.array([[1, 10 ** 9, 2]])))
    with pytest.raises(InferenceServerException):
        client.infer("intent", [bytes_input("TEXT", ["\x00"])])
    client.infer("intent", [bytes_input("TEXT", ["打开空调" * 1000, "打开空调", "导航到北京西站"])])

    def metric(line_start: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.ports.metrics}/metrics", timeout=30).read().decode()
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
        assert values, line_start
        return values[0]

    assert metric('ernie_rejected_requests_total{model="intent_model",reason="invalid_input"}') >= 1
    assert metric('ernie_rejected_requests_total{model="intent_tokenizer",reason="invalid_input"}') >= 1
    assert metric('ernie_texts_truncated_total{model="intent_tokenizer"}') >= 1
    assert metric('ernie_texts_total{model="intent_tokenizer"}') >= 3
    assert metric('ernie_tokens_total{model="intent_tokenizer"}') > 0
