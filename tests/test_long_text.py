"""seq_cls `--long-text windows`: a document longer than the model is read in every window and
answered as a whole, on every engine, on Triton and Paddle Serving, checked against the source
model in PaddleNLP over the same windows."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from builder.build import build
from builder.example import intents
from builder.options import BuildOptions
from builder.paddle_serving.server import PipelineService
from builder.verify import verify
from clients.seq_cls import SeqClsClient, main as seq_cls_cli
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind
from serving_core.seq_cls import SeqClsSettings, decode_windows, softmax

MAX_SEQ_LEN = 32  # documents of ten commands take three windows or more
SHORT = [t for t, _ in intents.examples(5)][:20]


def _documents(count: int = 12) -> list[tuple[str, str]]:
    """(document, its majority intent): two commands of one intent, then eight of another."""
    by_intent: dict[str, list[str]] = {}
    for text, intent in intents.examples(5):
        by_intent.setdefault(intent, []).append(text)
    rng = random.Random(0)
    documents = []
    for _ in range(count):
        first, majority = rng.sample(sorted(by_intent), 2)
        documents.append(("。".join(rng.sample(by_intent[first], 2) + rng.sample(by_intent[majority], 8)), majority))
    return documents


DOCUMENTS = _documents()


def test_mean_aggregates_logits_and_max_takes_each_class_best_window():
    windows = [np.array([[2.0, 0.0], [0.0, 4.0]], dtype=np.float32), np.array([[1.0, 0.0]], dtype=np.float32)]
    mean = decode_windows(windows, SeqClsSettings(("a", "b"), aggregate="mean"))
    np.testing.assert_allclose(mean.probabilities, softmax(np.array([[1.0, 2.0], [1.0, 0.0]])), rtol=1e-6)
    assert mean.label.tolist() == [1, 0]
    best = decode_windows(windows, SeqClsSettings(("a", "b"), multi_label=True, threshold=0.8, aggregate="max"))
    np.testing.assert_allclose(best.probabilities[0], 1 / (1 + np.exp([-2.0, -4.0])), rtol=1e-6)
    assert best.selected.tolist() == [[True, True], [False, False]]
    with pytest.raises(ValueError, match="aggregate"):
        SeqClsSettings(("a",), aggregate="vote")


@pytest.mark.parametrize("options, message", [
    ({"text_pair": True}, "--text-pair"), ({"direct": True}, "--direct"), ({"gpu_onnxruntime": True}, "--gpu"),
    ({"task": Task.TOKEN_CLS}, "--long-text is for seq_cls")])
def test_windows_refuse_what_they_cannot_serve(tmp_path, options, message):
    with pytest.raises(UserError, match=message):  # before the model is read
        build(tmp_path / "no model here", tmp_path / "repo",
              BuildOptions(**{"task": Task.SEQ_CLS, "long_text": "windows", **options}), show_progress=False)
    assert not (tmp_path / "repo").exists()


VARIANTS = {
    "doc": {},  # auto: the engine the build measured fastest
    "doc_paddle": {"runtime": RuntimeKind.PADDLE},
    "doc_ort": {"runtime": RuntimeKind.ONNXRUNTIME},
    "doc_openvino": {"runtime": RuntimeKind.OPENVINO},
    "doc_multi": {"runtime": RuntimeKind.ONNXRUNTIME, "multi_label": True, "threshold": 0.3},
    "doc_truncate": {"runtime": RuntimeKind.ONNXRUNTIME, "long_text": "truncate"},  # today's default, for contrast
}


@pytest.fixture(scope="module")
def built(example_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("long_text")
    for name, extra in VARIANTS.items():
        options = {"long_text": "windows", "max_seq_len": MAX_SEQ_LEN, **extra}
        build(example_model, output, BuildOptions(task=Task.SEQ_CLS, name=name, target="all", **options),
              show_progress=False)
    return output


@pytest.mark.server
def test_a_document_is_answered_with_its_majority_intent_reading_every_window(server):
    documents = [d for d, _ in DOCUMENTS]
    windowed = SeqClsClient(server.grpc_url, "doc").classify(documents)
    truncated = SeqClsClient(server.grpc_url, "doc_truncate").classify(documents)
    right = sum(r.label_name == majority for r, (_, majority) in zip(windowed, DOCUMENTS))
    right_before = sum(r.label_name == majority for r, (_, majority) in zip(truncated, DOCUMENTS))
    assert right >= 9 and right_before <= 6, (right, right_before)
    assert all(r.windows >= 3 and not r.truncated for r in windowed)
    assert all(r.truncated and r.windows is None for r in truncated)


@pytest.mark.server
@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "doc_truncate"])
def test_verify_passes_on_long_and_short_texts_on_every_engine(built, server, name):
    rows = [(d,) for d, _ in DOCUMENTS] + [(t,) for t in SHORT]
    report = verify(built / "triton", name, server.grpc_url, rows)
    assert report.passed and report.texts == len(rows), report.to_json()


@pytest.mark.server
def test_one_long_document_among_short_texts_gets_the_answer_it_gets_alone(server):
    client = SeqClsClient(server.grpc_url, "doc")
    mixed = SHORT[:10] + [DOCUMENTS[0][0]] + SHORT[10:]
    together = client.classify(mixed)
    alone = [client.classify([text])[0] for text in mixed]
    assert [(r.label, r.windows, r.truncated) for r in together] == [(r.label, r.windows, r.truncated) for r in alone]
    assert max(abs(a.confidence - b.confidence) for a, b in zip(together, alone)) < 1e-4
    assert [r.windows for r in together].count(1) == len(SHORT)


@pytest.mark.server
def test_a_megabyte_document_is_cut_at_max_windows_and_flagged(server):
    (answer,) = SeqClsClient(server.grpc_url, "doc").classify(["打开空调。" * 200_000])
    assert answer.windows == BuildOptions(task=Task.SEQ_CLS).max_windows and answer.truncated


@pytest.mark.server
def test_the_client_cli_prints_windows(server, capsys):
    assert seq_cls_cli(["--url", server.grpc_url, "--model", "doc", DOCUMENTS[0][0], SHORT[0]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["windows"] for line in lines][1] == 1 and lines[0]["windows"] >= 3


@pytest.mark.server
def test_paddle_serving_answers_long_documents_as_triton(built, server):
    texts = [d for d, _ in DOCUMENTS[:6]] + SHORT[:6]
    with PipelineService(built / "paddle_serving" / "doc_ort") as service:
        # the client in its own process: Paddle Serving's client needs protobuf's Python implementation
        out = subprocess.run([sys.executable, "-m", "clients.paddle_serving", "--task", "seq_cls", "--url", service.url,
                              *texts], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    served = [json.loads(line) for line in out.stdout.splitlines()]
    expected = [r.to_json() for r in SeqClsClient(server.grpc_url, "doc_ort").classify(texts)]
    assert [(s["label_name"], s["windows"], s["truncated"]) for s in served] == \
        [(e["label_name"], e["windows"], e["truncated"]) for e in expected]
    assert max(abs(s["confidence"] - e["confidence"]) for s, e in zip(served, expected)) < 1e-4
