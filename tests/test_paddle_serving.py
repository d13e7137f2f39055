"""Paddle Serving target: generated pipeline services run in the real paddle_serving_server
pipeline, answer over gRPC (PipelineClient) and HTTP, and agree with the Triton ensemble
built from the same model (itself checked against PaddleNLP here and in the Triton tests)."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from builder.build import build
from builder.engine.quantize import QuantizeOptions
from builder.example import intents
from builder.options import BuildOptions
from builder.paddle_serving.service import PipelineOptions
from builder.paddle_serving.server import pipeline_services
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.verify import verify
from clients.intent_slot import IntentSlotClient
from clients.qa import QAClient
from clients.seq_cls import SeqClsClient
from clients.token_cls import TokenClsClient
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

pytestmark = pytest.mark.server

COMMANDS = [t for t, _, _ in intents.annotated_examples(4)][:12]
INPUTS = {
    Task.SEQ_CLS: COMMANDS + ["导航到北京西站" * 40, "🎉播放ＡＢＣ的 Love Story"],
    Task.TOKEN_CLS: COMMANDS + ["，".join(COMMANDS), "播放  周杰伦的 稻香🎉"],
    Task.INTENT_SLOT: COMMANDS + ["，".join(COMMANDS[:3])],
    Task.QA: [f"{q}\t{c}" for q, c, _, _ in intents.qa_examples(9, count=8, commands=8)] +
             [f"{q}\t{c}" for q, c in intents.QA_DEMO],
}
OPENVINO_INT8 = "seq_cls_openvino_int8"  # NNCF's INT8, served as OpenVINO IR by both targets


@pytest.fixture(scope="module")
def built(example_model, token_cls_model, qa_model, intent_slot_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("both")
    models = {Task.SEQ_CLS: example_model, Task.TOKEN_CLS: token_cls_model, Task.QA: qa_model,
              Task.INTENT_SLOT: intent_slot_model}
    for task, model in models.items():
        # A 50 ms auto-batching window, so that the batching test does not depend on timing luck. intent_slot
        # (a per-text and a per-token output) is built with shape buckets: both servers pad and cut back.
        build(model, output, BuildOptions(task=task, name=task.value, target="all", max_seq_len=64,
                                          pipeline=PipelineOptions(auto_batching_timeout_ms=50),
                                          shape_buckets=8 if task is Task.INTENT_SLOT else 0),
              show_progress=False)
    build(example_model, output, BuildOptions(task=Task.SEQ_CLS, name=OPENVINO_INT8, target="all", max_seq_len=64,
                                              runtime=RuntimeKind.OPENVINO, quantize="int8",
                                              quantize_options=QuantizeOptions()), show_progress=False)
    return output


@pytest.fixture(scope="module")
def triton(built):
    with TritonServer(built / "triton", ServerPorts.free()) as server:
        yield server


@pytest.fixture(scope="module")
def pipelines(built):
    services = {**{task: built / "paddle_serving" / task.value for task in INPUTS},
                OPENVINO_INT8: built / "paddle_serving" / OPENVINO_INT8}
    with pipeline_services(services) as services:
        yield services


def _cli(task: Task, url: str, rows: list[str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clients.paddle_serving", "--task", task.value, "--url", url,
                           *extra, *rows], capture_output=True, text=True, timeout=180)


def _triton_answers(task: Task, url: str, rows: list[str]) -> list[dict]:
    if task is Task.SEQ_CLS:
        return [r.to_json() for r in SeqClsClient(url, task.value).classify(rows, top_k=2)]
    if task is Task.TOKEN_CLS:
        return TokenClsClient(url, task.value).entities(rows)
    if task is Task.INTENT_SLOT:
        return IntentSlotClient(url, task.value).parse(rows)
    pairs = [r.split("\t") for r in rows]
    return QAClient(url, task.value).answer([q for q, _ in pairs], [c for _, c in pairs])


def _same(a, b, tolerance=1e-4) -> bool:
    """Equal JSON, floats within `tolerance`."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tolerance
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y, tolerance) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("task", list(INPUTS), ids=lambda t: t.value)
def test_paddle_serving_answers_equal_triton_and_the_source(built, triton, pipelines, task):
    rows = INPUTS[task]
    extra = ("--top-k", "2") if task is Task.SEQ_CLS else ()
    out = _cli(task, pipelines[task].url, rows, *extra)
    assert out.returncode == 0, out.stderr
    served = [json.loads(line) for line in out.stdout.splitlines()]
    expected = _triton_answers(task, triton.grpc_url, rows)
    mismatches = [(s, e) for s, e in zip(served, expected) if not _same(s, e)]
    assert len(served) == len(rows) and not mismatches, mismatches[:2]
    checked = [tuple(r.split("\t")) for r in rows]
    report = verify(built / "triton", task.value, triton.grpc_url, checked)
    assert report.passed, report.to_json()


def test_openvino_int8_is_the_same_ir_on_both_targets(built, triton, pipelines):
    """The OpenVINO INT8 model step reads OpenVINO IR (.xml + .bin) under Paddle Serving as under
    Triton: the same answers from both, and the Triton ensemble within its INT8 gate of the source."""
    rows = INPUTS[Task.SEQ_CLS]
    served_files = {p.suffix for p in (built / "paddle_serving" / OPENVINO_INT8 / "serving_server").iterdir()}
    assert {".xml", ".bin"} <= served_files and ".onnx" not in served_files
    out = _cli(Task.SEQ_CLS, pipelines[OPENVINO_INT8].url, rows, "--top-k", "2")
    assert out.returncode == 0, out.stderr
    served = [json.loads(line) for line in out.stdout.splitlines()]
    expected = [r.to_json() for r in SeqClsClient(triton.grpc_url, OPENVINO_INT8).classify(rows, top_k=2)]
    assert len(served) == len(rows) and all(_same(s, e) for s, e in zip(served, expected)), (served[:1], expected[:1])
    # The INT8 bar of test_compression.py (NNCF's static INT8 moves probabilities up to 0.11 there).
    report = verify(built / "triton", OPENVINO_INT8, triton.grpc_url, [(r,) for r in rows], tolerance=0.15,
                    min_agreement=0.9)
    assert report.passed, report.to_json()


def test_bad_input_gets_an_error_reply_and_the_service_keeps_serving(pipelines):
    url = pipelines[Task.SEQ_CLS].url
    out = _cli(Task.SEQ_CLS, url, ["   "])
    assert out.returncode == 1 and "error 400" in out.stderr and "empty" in out.stderr
    out = _cli(Task.QA, pipelines[Task.QA].url, ["question without a context"])
    assert out.returncode == 1 and "TAB" in out.stderr
    assert _cli(Task.SEQ_CLS, url, ["打开空调"]).returncode == 0


def test_concurrent_requests_are_auto_batched_with_unchanged_answers(pipelines, built):
    service = pipelines[Task.TOKEN_CLS]
    texts = INPUTS[Task.TOKEN_CLS] * 3
    alone = _cli(Task.TOKEN_CLS, service.url, texts)
    together = subprocess.run([sys.executable, "-m", "tests.pipeline_probe", service.url, "token_cls", "8", *texts],
                              capture_output=True, text=True, timeout=180)
    assert together.returncode == 0, together.stderr
    assert all(_same(json.loads(a), json.loads(b)) for a, b in
               zip(alone.stdout.splitlines(), together.stdout.splitlines(), strict=True))
    logs = (built / "paddle_serving" / "token_cls" / "PipelineServingLogs" / "pipeline.log").read_text()
    assert "Auto-batching is On" in logs


def test_http_gateway(pipelines):
    service = pipelines[Task.SEQ_CLS]
    body = json.dumps({"key": ["text"], "value": [json.dumps(["打开空调"], ensure_ascii=False)]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{service.http_port}/seq_cls/prediction", data=body,
                                     headers={"Content-Type": "application/json"})
    reply = json.loads(urllib.request.urlopen(request, timeout=30).read())
    assert reply["err_no"] == 0
    (answer,) = json.loads(dict(zip(reply["key"], reply["value"]))["result"])
    assert answer["text"] == "打开空调" and answer["label_name"] in intents.labels()


def test_prototxt_is_paddle_serving_schema_with_program_names(built):
    """serving_server/serving_client prototxt parse with Paddle Serving's own message."""
    script = (
        "from serving_core.paddle_serving_compat import prepare; prepare()\n"
        "import sys, json\n"
        "from google.protobuf import text_format\n"
        "from paddle_serving_server.proto import general_model_config_pb2 as g\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    c = text_format.Parse(open(path).read(), g.GeneralModelConfig())\n"
        "    out[path] = [[(v.name, v.feed_type) for v in c.feed_var], [(v.name, v.fetch_type) for v in c.fetch_var]]\n"
        "print(json.dumps(out))\n")
    service = built / "paddle_serving" / "intent_slot"
    paths = [str(service / "serving_server" / "serving_server_conf.prototxt"),
             str(service / "serving_client" / "serving_client_conf.prototxt")]
    out = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for feeds, fetches in json.loads(out.stdout).values():
        assert feeds == [["input_ids", 2]]  # the seed's int32 input_ids-only export
        assert len(fetches) == 2 and all(kind == 1 for _, kind in fetches)
    assert (service / "serving_server" / "serving_server_conf.stream.prototxt").stat().st_size > 0
