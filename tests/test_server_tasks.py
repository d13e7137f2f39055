"""token_cls, qa and intent_slot end to end on a real tritonserver, checked against PaddleNLP."""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from builder.build import build
from builder.example import intents
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.triton.config import BatchingOptions
from builder.verify import verify
from clients.intent_slot import IntentSlotClient
from clients.qa import QAClient
from clients.token_cls import TokenClsClient
from clients.triton import bytes_input
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from .hard_texts import HAND_WRITTEN

pytestmark = pytest.mark.server

COMMANDS = [t for t, _, _ in intents.annotated_examples(3)][:30]
LONG = ["，".join(COMMANDS[i:i + 12]) for i in range(0, 24, 4)]  # 60-100 characters each
NER_TEXTS = COMMANDS + LONG + [t for t in HAND_WRITTEN if t.strip()] + [
    "播放  周杰伦的 稻香", "🎉播放周杰伦的稻香🎉", "播放ＡＢＣ的Love Story", "导航到北京西站" * 20]
QA_ROWS = [(q, c) for q, c, _, _ in intents.qa_examples(5, count=20, commands=3)] + \
          [(q, c) for q, c, _, _ in intents.qa_examples(6, count=10, commands=10)] + intents.QA_DEMO


@pytest.fixture(scope="module")
def repository(token_cls_model, qa_model, intent_slot_model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("tasks") / "models"
    variants = {
        "ner": (token_cls_model, Task.TOKEN_CLS, {}),
        "ner_windows": (token_cls_model, Task.TOKEN_CLS, {"max_seq_len": 16, "stride": 4, "max_windows": 0,
                                                           "runtime": RuntimeKind.ONNXRUNTIME}),
        "ner_ort": (token_cls_model, Task.TOKEN_CLS, {"runtime": RuntimeKind.ONNXRUNTIME}),
        "ner_openvino": (token_cls_model, Task.TOKEN_CLS, {"runtime": RuntimeKind.OPENVINO}),
        "ner_buckets": (token_cls_model, Task.TOKEN_CLS, {"shape_buckets": 8}),
        "qa": (qa_model, Task.QA, {}),
        "qa_openvino": (qa_model, Task.QA, {"runtime": RuntimeKind.OPENVINO}),
        "qa_buckets": (qa_model, Task.QA, {"max_seq_len": 32, "stride": 8, "shape_buckets": 8}),
        # A 20 ms batching window, so that the batching test does not depend on timing luck.
        "qa_windows": (qa_model, Task.QA, {"max_seq_len": 32, "stride": 8, "runtime": RuntimeKind.ONNXRUNTIME,
                                           "model_batching": BatchingOptions(max_queue_delay_us=20_000)}),
        "slots": (intent_slot_model, Task.INTENT_SLOT, {"max_seq_len": 16}),
        "slots_ort": (intent_slot_model, Task.INTENT_SLOT, {"runtime": RuntimeKind.ONNXRUNTIME}),
        "slots_openvino": (intent_slot_model, Task.INTENT_SLOT, {"runtime": RuntimeKind.OPENVINO, "max_seq_len": 16}),
    }
    for name, (model, task, extra) in variants.items():
        build(model, repo, BuildOptions(task=task, name=name, **extra), show_progress=False)
    return repo


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, ServerPorts.free()) as running:
        yield running


@pytest.mark.parametrize("name", ["ner", "ner_windows", "ner_ort", "ner_openvino", "ner_buckets"])
def test_entities_equal_paddlenlp(server, repository, name):
    report = verify(repository, name, server.grpc_url, [(t,) for t in NER_TEXTS])
    assert report.passed, report.to_json()


@pytest.mark.parametrize("name", ["qa", "qa_windows", "qa_openvino", "qa_buckets"])
def test_answers_equal_paddlenlp_compute_prediction(server, repository, name):
    report = verify(repository, name, server.grpc_url, QA_ROWS)
    assert report.passed, report.to_json()


@pytest.mark.parametrize("name", ["slots", "slots_ort", "slots_openvino"])
def test_intents_and_slots_equal_the_source_program(server, repository, name):
    report = verify(repository, name, server.grpc_url, [(t,) for t in COMMANDS + LONG[:2] + intents.DEMO_TEXTS])
    assert report.passed, report.to_json()


def test_entity_offsets_point_into_the_text(server):
    for result in TokenClsClient(server.grpc_url, "ner_windows").entities(NER_TEXTS):
        for entity in result["entities"]:
            assert result["text"][entity["start"]:entity["end"]] == entity["text"]
        assert result["truncated"] is False  # windows: nothing is cut


def test_intent_slot_output_shape_and_truncation(server):
    (short, long) = IntentSlotClient(server.grpc_url, "slots").parse(["播放周杰伦的稻香", "，".join(COMMANDS[:4])])
    assert set(short) == {"text", "intent", "confidence", "slots", "truncated"}
    assert short["intent"] in intents.labels() and not short["truncated"] and long["truncated"]
    for slot in short["slots"]:
        assert short["text"][slot["start"]:slot["end"]] == slot["entity"]


def test_qa_answer_is_taken_from_the_context(server):
    for (_, context), result in zip(QA_ROWS, QAClient(server.grpc_url, "qa_windows").answer(
            [q for q, _ in QA_ROWS], [c for _, c in QA_ROWS])):
        assert result["answer"] == context[result["start"]:result["end"]]
        assert 0 < result["probability"] <= 1


def test_qa_windows_of_concurrent_requests_share_model_batches(server):
    stats = grpcclient.InferenceServerClient(server.grpc_url)
    before = stats.get_inference_statistics("qa_windows_model", as_json=True)["model_stats"][0]

    def ask(row):
        return QAClient(server.grpc_url, "qa_windows").answer([row[0]], [row[1]])[0]["answer"]

    alone = [ask(row) for row in QA_ROWS[:12]]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(ask, QA_ROWS[:12]))
    assert together == alone
    after = stats.get_inference_statistics("qa_windows_model", as_json=True)["model_stats"][0]
    requests = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert requests == 24 and executions < requests


@pytest.mark.parametrize("model,inputs", [
    ("qa", {"QUESTION": [b""], "CONTEXT": [b"abc"]}),
    ("qa", {"QUESTION": [b"q"], "CONTEXT": [b"\xff"]}),
    ("ner", {"TEXT": [b"   "]}),
    ("slots", {"TEXT": [b"\xc3"]}),
])
def test_bad_input_gets_an_error_and_serving_goes_on(server, model, inputs):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensors = []
    for name, values in inputs.items():
        tensor = grpcclient.InferInput(name, [len(values), 1], "BYTES")
        import numpy as np

        tensor.set_data_from_numpy(np.array(values, dtype=np.object_).reshape(-1, 1))
        tensors.append(tensor)
    with pytest.raises(InferenceServerException, match="empty|UTF-8"):
        client.infer(model, tensors)
    assert client.infer("ner", [bytes_input("TEXT", ["播放周杰伦的稻香"])]).as_numpy("entity_count") is not None


@pytest.mark.parametrize("module,model,argument,key", [
    ("clients.token_cls", "ner", "播放周杰伦的稻香", "entities"),
    ("clients.qa", "qa", "要听什么歌\t打开空调，播放周杰伦的稻香", "answer"),
    ("clients.intent_slot", "slots", "播放周杰伦的稻香", "slots"),
])
def test_cli_clients(server, module, model, argument, key):
    out = subprocess.run([sys.executable, "-m", module, "--url", server.grpc_url, "--model", model, argument],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert key in json.loads(out.stdout.splitlines()[0])


@pytest.mark.parametrize("name,rows", [("ner", [(t,) for t in NER_TEXTS[:8]]), ("qa", QA_ROWS[:4]),
                                       ("slots", [(t,) for t in COMMANDS[:8]])])
def test_perf_analyzer_drives_the_ensemble(server, repository, name, rows):
    """Triton's own load generator runs against each task's ensemble (texts as BYTES [B, 1],
    `-b 1`, --input-data): it completes and counts answers; nothing about speed is asserted."""
    from benchmarks.perf_analyzer import ensure_perf_analyzer, measure
    from builder.triton.repository import read_build

    spec, _ = read_build(repository, name)
    requests = [rows[i:i + 2] for i in range(0, len(rows), 2)]
    figures = measure(ensure_perf_analyzer(), server.grpc_url, name, requests, [t.name for t in spec.inputs],
                      concurrency=2, seconds=1.0, stability_percentage=1000.0)
    assert figures.requests_per_s > 0 and figures.texts_per_s == pytest.approx(2 * figures.requests_per_s)
    assert 0 < figures.p50_ms <= figures.p99_ms
