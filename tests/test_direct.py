"""`--direct`: the seq_cls ensemble's work in one batched Python model (`<name>_direct`), served
beside the ensemble on a real tritonserver and checked against PaddleNLP on every engine."""
from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from builder.build import build, check_runtime_options
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.triton.check import check_repository
from builder.triton.config import MODEL_HOLD_MS, BatchingOptions
from builder.verify import verify
from clients.seq_cls import SeqClsClient
from clients.triton import bytes_input
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from .hard_texts import HAND_WRITTEN, generated

TEXTS = [t for t in HAND_WRITTEN + generated(40) if t.strip()] + ["打开空调", "播放周杰伦的花心", "导航到北京西站"]
ENGINES = {"intent": {}, "intent_ort": {"runtime": RuntimeKind.ONNXRUNTIME},
           "intent_openvino": {"runtime": RuntimeKind.OPENVINO}}


@pytest.fixture(scope="module")
def repository(example_model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("direct") / "models"
    for name, extra in ENGINES.items():
        build(example_model, repo, BuildOptions(task=Task.SEQ_CLS, name=name, direct=True, **extra),
              show_progress=False)
    build(example_model, repo, BuildOptions(task=Task.SEQ_CLS, name="intent_pair", text_pair=True, direct=True,
                                            runtime=RuntimeKind.ONNXRUNTIME), show_progress=False)
    # A long batching window: concurrent requests surely share one execute(), and the default hold
    # after it: the direct model sends that batch's answers, errors included, itself.
    build(example_model, repo, BuildOptions(task=Task.SEQ_CLS, name="intent_held", direct=True, model_batching=(
        BatchingOptions(max_queue_delay_us=300_000, hold_ms=MODEL_HOLD_MS)), runtime=RuntimeKind.ONNXRUNTIME),
          show_progress=False)
    return repo


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, ServerPorts.free()) as running:
        yield running


@pytest.mark.server
@pytest.mark.parametrize("name", list(ENGINES))
def test_direct_answers_equal_paddlenlp(server, repository, name):
    report = verify(repository, name, server.grpc_url, [(t,) for t in TEXTS], served_model=f"{name}_direct")
    assert report.passed, report.to_json()
    assert report.agreement == 1.0 and report.texts == len(TEXTS)


@pytest.mark.server
def test_direct_text_pairs_equal_paddlenlp(server, repository):
    rows = list(zip(TEXTS, reversed(TEXTS)))
    report = verify(repository, "intent_pair", server.grpc_url, rows, served_model="intent_pair_direct")
    assert report.passed, report.to_json()


@pytest.mark.server
def test_direct_declares_batched_rows_and_answers_them(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    config = client.get_model_config("intent_direct", as_json=True)["config"]
    assert int(config["max_batch_size"]) > 0
    dims = {o["name"]: [int(d) for d in o["dims"]] for o in config["output"]}
    assert dims["label"] == dims["confidence"] == dims["label_name"] == dims["truncated"] == [1]
    result = client.infer("intent_direct", [bytes_input("TEXT", TEXTS[:3])])
    assert result.as_numpy("label").shape == (3, 1) and result.as_numpy("probabilities").shape[0] == 3
    ensemble = client.infer("intent", [bytes_input("TEXT", TEXTS[:3])])
    np.testing.assert_allclose(result.as_numpy("probabilities"), ensemble.as_numpy("probabilities"), atol=1e-6)
    assert result.as_numpy("label").reshape(-1).tolist() == ensemble.as_numpy("label").tolist()


@pytest.mark.server
def test_direct_sends_the_outputs_a_client_asks_for(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    asked = ["label_name", "confidence"]
    result = client.infer("intent_direct", [bytes_input("TEXT", TEXTS[:2])],
                          outputs=[grpcclient.InferRequestedOutput(name) for name in asked])
    sent = [output["name"] for output in result.get_response(as_json=True)["outputs"]]
    assert sorted(sent) == sorted(asked)
    everything = client.infer("intent_direct", [bytes_input("TEXT", TEXTS[:2])])
    declared = [o["name"] for o in client.get_model_config("intent_direct", as_json=True)["config"]["output"]]
    assert sorted(o["name"] for o in everything.get_response(as_json=True)["outputs"]) == sorted(declared)
    assert everything.as_numpy("label_name").tolist() == result.as_numpy("label_name").tolist()
    np.testing.assert_array_equal(everything.as_numpy("confidence"), result.as_numpy("confidence"))


@pytest.mark.server
@pytest.mark.parametrize("model", ["intent_direct", "intent_held_direct"])
def test_a_bad_request_fails_alone_while_concurrent_ones_are_answered(server, model):
    good = SeqClsClient(server.grpc_url, model).classify(TEXTS[:8])
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def send(index):
        if index % 4 == 0:
            bad = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            bad.set_data_from_numpy(np.array([[b"\xff\xfe broken"]], dtype=np.object_))
            try:
                client.infer(model, [bad])
            except InferenceServerException as exc:
                return exc.message()
            return "answered"
        return SeqClsClient(server.grpc_url, model).classify([TEXTS[index % 8]])[0].label

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(32)))
    for index, answer in enumerate(answers):
        if index % 4 == 0:
            assert "not valid UTF-8" in answer
        else:
            assert answer == good[index % 8].label
    assert SeqClsClient(server.grpc_url, model).classify(TEXTS[:1])[0].label == good[0].label


@pytest.mark.server
def test_check_covers_the_direct_model(repository):
    assert check_repository(repository).ok
    code = repository / "intent_direct" / "1" / "model.py"
    original = code.read_text(encoding="utf-8")
    try:
        code.write_text(original + "\n# edited after the build\n", encoding="utf-8")
        report = check_repository(repository)
        assert not report.ok and any(p.path == "intent_direct/1/model.py" for p in report.problems)
    finally:
        code.write_text(original, encoding="utf-8")


@pytest.mark.parametrize("options", [
    BuildOptions(task=Task.TOKEN_CLS, direct=True),
    BuildOptions(task=Task.SEQ_CLS, multi_label=True, direct=True),
    BuildOptions(task=Task.SEQ_CLS, direct=True, target="paddle-serving"),
])
def test_direct_is_refused_where_it_cannot_serve(options):
    with pytest.raises(UserError, match="--direct"):
        check_runtime_options(options, None)


@pytest.mark.server
def test_builder_verify_cli_asks_the_direct_model(server, repository, example_model, capsys):
    from builder.cli import main

    assert main(["verify", str(repository), "--name", "intent_ort", "--direct", "--url", server.grpc_url,
                 "--texts", str(example_model / "data.txt")]) == 0
    assert '"agreement": 1.0' in capsys.readouterr().out
