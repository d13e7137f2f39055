"""seq_cls end to end on a real tritonserver over gRPC, checked against PaddleNLP."""
from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from builder.build import build
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.triton.config import BatchingOptions
from builder.verify import verify
from clients.seq_cls import SeqClsClient
from serving_core.errors import ClientError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from .hard_texts import HAND_WRITTEN, generated

pytestmark = pytest.mark.server

TEXTS = [t for t in HAND_WRITTEN + generated(60) if t.strip()] + ["打开空调", "播放周杰伦的花心", "导航到北京西站"]
PAIRS = list(reversed(TEXTS))


DUPLICATED = ["打", "开", "播", "放", "导", "航"]


def with_duplicated_tokens(example_model: Path, target: Path) -> Path:
    """The example with its vocab.txt listing characters of the texts a second time, on lines no
    text uses (real vocabularies sometimes list a token twice): PaddleNLP gives such a token the
    id of its last line, whose embedding row differs from the first's."""
    shutil.copytree(example_model, target)
    lines = (target / "vocab.txt").read_text(encoding="utf-8").split("\n")
    used = set("".join(TEXTS + PAIRS).lower())
    unused = [i for i, token in enumerate(lines) if len(token) == 1 and "\u4e00" <= token <= "\u9fff"
              and token not in used]
    for index, token in zip(unused[-len(DUPLICATED):], DUPLICATED):
        lines[index] = token
    (target / "vocab.txt").write_text("\n".join(lines), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def repository(example_model, static_export, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo") / "models"
    duplicated = with_duplicated_tokens(example_model, tmp_path_factory.mktemp("vocab") / "duplicated")
    variants = {
        "intent": (example_model, {}),
        "intent_ort": (example_model, {"runtime": RuntimeKind.ONNXRUNTIME}),
        "intent_openvino": (example_model, {"runtime": RuntimeKind.OPENVINO}),
        "intent_static": (static_export, {}),
        "intent_pair": (example_model, {"text_pair": True, "runtime": RuntimeKind.ONNXRUNTIME}),
        "intent_multi": (example_model, {"multi_label": True, "threshold": 0.2, "runtime": RuntimeKind.ONNXRUNTIME}),
        "intent_short": (example_model, {"max_seq_len": 8, "runtime": RuntimeKind.ONNXRUNTIME}),
        # A 20 ms batching window, so that the batching test does not depend on timing luck.
        "intent_batched": (example_model, {"model_batching": BatchingOptions(max_queue_delay_us=20_000),
                                            "runtime": RuntimeKind.ONNXRUNTIME}),
        "intent_duplicates": (duplicated, {"runtime": RuntimeKind.PADDLE}),
    }
    for name, (model, extra) in variants.items():
        build(model, repo, BuildOptions(task=Task.SEQ_CLS, name=name, **extra), show_progress=False)
    return repo


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, ServerPorts.free()) as running:
        yield running


@pytest.mark.parametrize("name", ["intent", "intent_ort", "intent_openvino", "intent_static", "intent_multi",
                                  "intent_short", "intent_duplicates"])
def test_served_answers_equal_paddlenlp(server, repository, name):
    report = verify(repository, name, server.grpc_url, [(t,) for t in TEXTS])
    assert report.passed, report.to_json()
    assert report.agreement == 1.0 and report.texts == len(TEXTS)


def test_duplicated_tokens_are_named_by_inspect_and_take_their_last_id(repository):
    from builder.inspect_model import describe
    from builder.source.detect import inspect_source
    from builder.triton.repository import read_build

    from serving_core.tokenization import ErnieTokenizer, TokenizerSettings

    source = inspect_source(Path(read_build(repository, "intent_duplicates")[1]["source"]))
    duplicates = describe(source)["vocab_duplicates"]
    assert sorted(duplicates) == sorted(DUPLICATED)
    tokenizer = ErnieTokenizer.from_files(repository / "intent_duplicates_tokenizer" / "1" / "vocab.txt",
                                          TokenizerSettings())
    assert tokenizer.encode(DUPLICATED).input_ids[:, 1].tolist() == [duplicates[t][-1] for t in DUPLICATED]


def test_text_pairs_equal_paddlenlp(server, repository):
    report = verify(repository, "intent_pair", server.grpc_url, list(zip(TEXTS, PAIRS)))
    assert report.passed, report.to_json()


def test_single_text_and_names(server):
    client = SeqClsClient(server.grpc_url, "intent")
    (result,) = client.classify(["播放周杰伦的花心"], top_k=3)
    assert result.label_name == client.labels[result.label]
    assert 0 < result.confidence <= 1 and not result.truncated
    assert [t["label"] for t in result.top_k][0] == result.label_name and len(result.top_k) == 3


def test_batches_larger_than_max_batch_size_are_chunked(server):
    client = SeqClsClient(server.grpc_url, "intent")
    texts = (TEXTS * 3)[:150]
    batched = client.classify(texts)
    one_by_one = [client.classify([t])[0] for t in texts[:20]]
    assert [r.label for r in batched[:20]] == [r.label for r in one_by_one]
    assert np.allclose([r.confidence for r in batched[:20]], [r.confidence for r in one_by_one], atol=1e-5)


def test_truncation_is_reported(server):
    client = SeqClsClient(server.grpc_url, "intent_short")
    short, long = client.classify(["打开空调", "导航到北京西站然后去首都机场"])
    assert not short.truncated and long.truncated


def test_multi_label_returns_label_sets(server):
    client = SeqClsClient(server.grpc_url, "intent_multi")
    results = client.classify(["打开空调", "播放周杰伦的花心"])
    for result in results:
        assert result.labels is not None
        assert all(p["probability"] >= 0.2 for p in result.top_k if p["label"] in result.labels)


def _raw_infer(server, model, values, name="TEXT", shape=None):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    array = np.array(values, dtype=np.object_)
    tensor = grpcclient.InferInput(name, list(shape or (len(values), 1)), "BYTES")
    tensor.set_data_from_numpy(array.reshape(shape or (len(values), 1)))
    return client.infer(model, [tensor])


@pytest.mark.parametrize("values,message", [
    ([b""], "empty"),
    ([b"   \t "], "empty or only whitespace"),
    ([b"ok", b"\xff\xfe bad"], "not valid UTF-8"),
])
def test_bad_text_gets_an_error_and_the_server_keeps_serving(server, values, message):
    with pytest.raises(InferenceServerException, match=message):
        _raw_infer(server, "intent", values)
    assert SeqClsClient(server.grpc_url, "intent").classify(["打开空调"])[0].label_name


def test_wrong_shape_and_over_limit_batches_are_refused(server):
    with pytest.raises(InferenceServerException):
        _raw_infer(server, "intent", [b"a", b"b"], shape=(1, 2))
    with pytest.raises(InferenceServerException, match="batch"):
        _raw_infer(server, "intent", [b"x"] * 65)
    with pytest.raises(InferenceServerException):  # pair model without its TEXT_PAIR
        _raw_infer(server, "intent_pair", [b"x"])
    assert SeqClsClient(server.grpc_url, "intent").classify(["打开空调"])


def test_client_rejects_wrong_usage(server):
    with pytest.raises(ClientError, match="needs text pairs"):
        SeqClsClient(server.grpc_url, "intent_pair").classify(["x"])
    with pytest.raises(ClientError, match="not found|unknown|no_such"):
        SeqClsClient(server.grpc_url, "no_such_model")


def test_concurrent_requests_are_batched_and_answers_unchanged(server):
    """Requests of different lengths arriving together share model executions (ragged
    dynamic batching) and every answer equals the answer to the request alone."""
    client = SeqClsClient(server.grpc_url, "intent_batched")
    texts = [t for t in TEXTS if len(t) < 60][:48]
    alone = [client.probabilities([t])[0] for t in texts]
    stats = grpcclient.InferenceServerClient(server.grpc_url)
    before = stats.get_inference_statistics("intent_batched_model", as_json=True)["model_stats"][0]

    def ask(text):
        return SeqClsClient(server.grpc_url, "intent_batched").probabilities([text])[0]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, texts * 4))
    np.testing.assert_allclose(np.array(together), np.array(alone * 4), atol=1e-5)
    after = stats.get_inference_statistics("intent_batched_model", as_json=True)["model_stats"][0]
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == len(texts) * 4
    assert executions < inferences, "no request was batched with another"


def test_cli_client_prints_json_lines(server, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("打开空调\n\n播放周杰伦的花心\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "clients.seq_cls", "--url", server.grpc_url, "--model", "intent",
                          "--file", str(texts), "--top-k", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["text"] for line in lines] == ["打开空调", "播放周杰伦的花心"]
    assert {"label", "label_name", "confidence", "truncated", "top_k"} <= set(lines[0])


def test_cli_client_error_is_readable(server):
    out = subprocess.run([sys.executable, "-m", "clients.seq_cls", "--url", server.grpc_url, "--model", "nope", "x"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: ")


def test_builder_verify_cli_against_running_server(server, repository, example_model):
    from builder.cli import main

    assert main(["verify", str(repository), "--name", "intent", "--url", server.grpc_url,
                 "--texts", str(example_model / "data.txt")]) == 0
