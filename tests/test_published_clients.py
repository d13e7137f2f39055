"""PaddleNLP's and FastDeploy's published clients against our servers: their calls and indexing
(tests/published_clients.py) print what our own clients print, on a real tritonserver and in
the real Paddle Serving pipeline. Paddle Serving clients run in a fresh interpreter with no
variables set, as the published scripts are run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from builder.build import build
from builder.example import intents
from builder.options import BuildOptions
from builder.paddle_serving.server import PipelineService, pipeline_services
from builder.serving.triton_server import ServerPorts, TritonServer
from clients.seq_cls import SeqClsClient
from clients.token_cls import TokenClsClient
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from . import published_clients as published

pytestmark = pytest.mark.server

COMMANDS = [t for t, _, _ in intents.annotated_examples(6)][:10]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(example_model, token_cls_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("published")
    for name, model, task, extra in [("seqcls", example_model, Task.SEQ_CLS, {}),
                                     ("multilabel", example_model, Task.SEQ_CLS, {"multi_label": True}),
                                     ("ernie_tokencls", token_cls_model, Task.TOKEN_CLS, {})]:
        build(model, output, BuildOptions(task=task, name=name, target="all", max_seq_len=64,
                                          runtime=RuntimeKind.ONNXRUNTIME, **extra),
              show_progress=False)
    return output


@pytest.fixture(scope="module")
def triton(built):
    with TritonServer(built / "triton", ServerPorts.free()) as server:
        yield server


@pytest.fixture(scope="module")
def pipelines(built):
    with pipeline_services({name: built / "paddle_serving" / name
                            for name in ("seqcls", "multilabel", "ernie_tokencls")}) as services:
        yield services


def _labels(model_dir: Path) -> list[str]:
    return (model_dir / "label.txt").read_text(encoding="utf-8").split()


def test_ernie_seq_cls_triton_client_counts_dev_accuracy_right(triton, example_model):
    rows = [line.split("\t") for line in (example_model / "dev.txt").read_text(encoding="utf-8").splitlines()]
    labels = _labels(example_model)
    texts, gold = [r[0] for r in rows] * 2, [labels.index(r[1]) for r in rows] * 2  # 50 texts: two batches
    ours = [r.label for r in SeqClsClient(triton.grpc_url, "seqcls").classify(texts)]
    expected = float(np.mean(np.array(ours) == np.array(gold)))
    assert published.triton_ernie_dev_accuracy(triton.grpc_url, "seqcls", texts, gold) == pytest.approx(expected)
    assert 0.5 <= expected <= 1.0  # the figure is a share, not 5.04


def test_multi_class_triton_client_prints_our_labels(triton, example_model):
    ours = SeqClsClient(triton.grpc_url, "seqcls").classify(COMMANDS)
    printed = published.triton_multi_class(triton.grpc_url, "seqcls", COMMANDS, _labels(example_model))
    assert [label for label, _ in printed] == [r.label_name for r in ours]
    assert [confidence for _, confidence in printed] == ["{:.3f}".format(r.confidence) for r in ours]


def test_multi_label_triton_client_prints_every_decision(triton):
    client = SeqClsClient(triton.grpc_url, "multilabel")
    sizes = []
    for result in client.classify(COMMANDS, top_k=len(client.labels)):
        ids, confidences = published.triton_multi_label(triton.grpc_url, "multilabel", result.text)
        expected = [client.labels.index(name) for name in result.labels]
        assert ids == ",".join(map(str, expected))
        probabilities = {entry["label"]: entry["probability"] for entry in result.top_k}
        assert confidences == ",".join("%.3f" % probabilities[client.labels[i]] for i in expected)
        sizes.append(len(expected))
    assert max(sizes) >= 2  # the example model does decide several labels for some texts


def test_multi_label_layout_for_several_texts_is_flat_with_separators(triton):
    answer = published.triton_run(triton.grpc_url, "multilabel", COMMANDS[:3])
    selected = answer["selected"]
    expected_ids, expected_probabilities = [], []
    for row in range(3):
        if row:
            expected_ids.append(-1)
            expected_probabilities.append(-1.0)
        expected_ids += np.flatnonzero(selected[row]).tolist()
        expected_probabilities += answer["probabilities"][row, selected[row]].tolist()
    assert answer["label"].tolist() == expected_ids
    assert np.allclose(answer["confidence"], expected_probabilities)
    assert answer["label_name"].shape == (3,) and answer["truncated"].shape == (3,)


def test_token_cls_triton_client_prints_our_entities(triton):
    texts = COMMANDS + ["，".join(COMMANDS[:4]), "播放  周杰伦的 稻香🎉"]
    ours = TokenClsClient(triton.grpc_url, "ernie_tokencls").entities(texts)
    printed = published.triton_token_cls(triton.grpc_url, "ernie_tokencls", texts)
    assert sum(len(row) for row in printed) >= len(texts)
    for text, mine, theirs in zip(texts, ours, printed):
        assert [(e["text"], e["label"], [e["start"], e["end"] - 1]) for e in mine["entities"]] == theirs, text


def test_configs_declare_what_the_server_returns(triton, built):
    from tritonclient.grpc import InferenceServerClient, InferInput

    client = InferenceServerClient(triton.grpc_url)
    for model, texts in [("seqcls", COMMANDS[:3]), ("multilabel", COMMANDS[:3]), ("ernie_tokencls", COMMANDS[:3])]:
        metadata = {t.name: list(t.shape) for t in client.get_model_metadata(model).outputs}
        request = InferInput("TEXT", [len(texts), 1], "BYTES")
        request.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
        result = client.infer(model, [request])
        for name, dims in metadata.items():
            shape = result.as_numpy(name).shape
            assert len(shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, shape)), (model, name)


def _serving(name: str, service: PipelineService, texts) -> object:
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    done = subprocess.run([sys.executable, "-m", "tests.published_clients", name, service.url,
                           json.dumps(texts, ensure_ascii=False)], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ernie_seq_cls_and_multi_class_serving_clients(pipelines, triton):
    ours = SeqClsClient(triton.grpc_url, "seqcls").classify(COMMANDS)
    answer = _serving("ernie_seq_cls", pipelines["seqcls"], COMMANDS)
    assert answer["err_no"] == 0 and answer["keys"] == ["label", "confidence"]
    assert answer["label"] == [r.label for r in ours]
    assert np.allclose(answer["confidence"], [r.confidence for r in ours], atol=1e-5)
    assert _serving("multi_class", pipelines["seqcls"], COMMANDS) == [r.label for r in ours]


def test_multi_class_http_client(pipelines, triton):
    ours = SeqClsClient(triton.grpc_url, "seqcls").classify(COMMANDS)
    url = f"http://{pipelines['seqcls'].http_url}/seqcls/prediction"
    assert published.http_multi_class(url, COMMANDS) == [r.label for r in ours]


def test_multi_label_serving_client_gets_every_decision(pipelines, triton):
    client = SeqClsClient(triton.grpc_url, "multilabel")
    expected = [[client.labels.index(name) for name in r.labels] for r in client.classify(COMMANDS)]
    assert _serving("multi_label", pipelines["multilabel"], COMMANDS) == expected


def test_token_cls_serving_client_with_texts_and_character_lists(pipelines, triton):
    texts = COMMANDS[:4]
    ours = TokenClsClient(triton.grpc_url, "ernie_tokencls").entities(texts)
    expected = [[[e["text"], e["label"], [e["start"], e["end"] - 1]] for e in row["entities"]] for row in ours]
    as_texts = _serving("token_cls", pipelines["ernie_tokencls"], texts)
    assert as_texts["entities"] == expected
    assert len(as_texts["tokens_label"]) == len(texts)
    for text, entities in zip(texts[:2], expected):  # one character list a request, as their demo sends
        assert _serving("token_cls", pipelines["ernie_tokencls"], [list(text)])["entities"] == [entities]
