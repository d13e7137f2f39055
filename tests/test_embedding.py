"""`--task embedding`: an ERNIE encoder's sentence vectors, served by Triton and Paddle Serving,
equal to the source model's in PaddleNLP (its encoder, the pooling on top, Paddle's normalize)
on every FP32 engine; long documents read in windows whose vectors are averaged."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from builder.build import build
from builder.example import intents
from builder.options import BuildOptions
from builder.paddle_serving.server import PipelineService
from builder.verify import cosines, verify
from clients.embedding import EmbeddingClient, main as embedding_cli
from serving_core import interface
from serving_core.embedding import EmbeddingSettings, embed_windows
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

EXAMPLES = intents.examples(7)[:40]
SHORT = [t for t, _ in EXAMPLES]
DOCUMENT = "。".join(SHORT[:12])  # a dozen commands: several windows of 32 tokens


def test_windows_are_averaged_then_normalised():
    windows = [np.array([[3.0, 0.0], [1.0, 0.0]], dtype=np.float32), np.array([[0.0, 2.0]], dtype=np.float32)]
    np.testing.assert_allclose(embed_windows(windows, EmbeddingSettings(2, aggregate="mean")), [[1, 0], [0, 1]])
    np.testing.assert_allclose(embed_windows(windows, EmbeddingSettings(2, normalize=False)), [[2, 0], [0, 2]])
    for bad in ({"pooling": "max"}, {"aggregate": "max"}):
        with pytest.raises(ValueError):
            EmbeddingSettings(2, **bad)


@pytest.fixture(scope="module")
def encoder_model(example_model, tmp_path_factory):
    from builder.example.embedding_example import save_encoder

    directory = tmp_path_factory.mktemp("models") / "encoder"
    save_encoder(example_model, directory)
    return directory


@pytest.mark.models
def test_what_an_embedding_cannot_be_built_from_is_refused(encoder_model, static_export, tmp_path):
    refused = [
        (encoder_model, BuildOptions(task=Task.SEQ_CLS), "--task embedding"),  # no classifier head to serve
        (static_export, BuildOptions(task=Task.EMBEDDING, pooling="mean"), "static export answers its own"),
        (encoder_model, BuildOptions(task=Task.EMBEDDING, long_text="windows", long_text_aggregate="max"),
         "averaged"),
    ]
    for model, options, message in refused:
        with pytest.raises(UserError, match=message):
            build(model, tmp_path / "repo", options, show_progress=False)
        assert not (tmp_path / "repo").exists()


@pytest.fixture(scope="module")
def semantic_search_model(encoder_model, tmp_path_factory):
    """A PaddleNLP semantic-search model as its training scripts save it: paddle.save of the
    state_dict of a layer holding the encoder as `ptm` and `emb_reduce_linear` (hidden -> 32),
    the tokenizer's save_pretrained beside it; and the pretrained model's config, which the
    builder needs (the scripts name the model on their command line instead)."""
    import paddle
    from paddlenlp.transformers import AutoModel, AutoTokenizer

    directory = tmp_path_factory.mktemp("models") / "semantic_search"
    paddle.seed(3)
    encoder = AutoModel.from_pretrained(str(encoder_model))

    class SemanticIndex(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.ptm = encoder
            self.emb_reduce_linear = paddle.nn.Linear(encoder.config.hidden_size, 32)

    directory.mkdir(parents=True)
    paddle.save(SemanticIndex().state_dict(), str(directory / "model_state.pdparams"))
    AutoTokenizer.from_pretrained(str(encoder_model)).save_pretrained(str(directory))
    encoder.config.save_pretrained(str(directory))
    return directory


@pytest.mark.models
def test_a_semantic_search_checkpoint_serves_its_pooler_projection_and_normalisation(semantic_search_model, tmp_path):
    from builder.source.detect import inspect_source

    layout = inspect_source(semantic_search_model).encoder_layout
    assert (layout.pooling, layout.dim, layout.normalize, layout.encoder_prefix) == ("pooler", 32, True, "ptm.")
    with pytest.raises(UserError, match="--task embedding"):
        build(semantic_search_model, tmp_path / "repo", BuildOptions(task=Task.SEQ_CLS), show_progress=False)
    bare = tmp_path / "no_config"
    bare.mkdir()
    for name in ("model_state.pdparams", "vocab.txt"):
        (bare / name).write_bytes((semantic_search_model / name).read_bytes())
    with pytest.raises(UserError, match="AutoConfig.from_pretrained"):
        build(bare, tmp_path / "repo", BuildOptions(task=Task.EMBEDDING), show_progress=False)


VARIANTS = {
    "emb": {"target": "all"},  # auto: the engine the build measured fastest; cls pooling, normalised
    "emb_paddle": {"runtime": RuntimeKind.PADDLE},
    "emb_openvino": {"runtime": RuntimeKind.OPENVINO},
    "emb_doc": {"runtime": RuntimeKind.ONNXRUNTIME, "pooling": "mean", "long_text": "windows", "max_seq_len": 32,
                "target": "all"},
    "emb_pooler": {"runtime": RuntimeKind.ONNXRUNTIME, "pooling": "pooler", "normalize": False},  # --normalize off
    "emb_int8": {"runtime": RuntimeKind.ONNXRUNTIME, "quantize": "int8"},  # gated by cosine and neighbours
    "emb_direct": {"runtime": RuntimeKind.ONNXRUNTIME, "direct": True},  # and <name>_direct beside the ensemble
}
INT8_TOLERANCE = 0.01  # cosine 0.99, the build's gate


@pytest.fixture(scope="module")
def built(encoder_model, semantic_search_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("embedding")
    for name, extra in VARIANTS.items():
        target = extra.get("target", "triton")
        where = output if target == "all" else output / "triton"
        build(encoder_model, where, BuildOptions(task=Task.EMBEDDING, name=name, **extra), show_progress=False)
    build(semantic_search_model, output / "triton", BuildOptions(task=Task.EMBEDDING, name="emb_search",
                                                                 runtime=RuntimeKind.ONNXRUNTIME), show_progress=False)
    return output


@pytest.mark.server
@pytest.mark.parametrize("name", [*VARIANTS, "emb_search"])
def test_served_vectors_are_the_source_models_on_every_engine_and_pooling(built, server, name):
    rows = [(t,) for t in SHORT] + [(DOCUMENT,)]
    report = verify(built / "triton", name, server.grpc_url, rows,
                    tolerance=INT8_TOLERANCE if "quantize" in VARIANTS.get(name, {}) else 1e-4)
    assert report.passed and report.texts == len(rows), report.to_json()


@pytest.mark.server
def test_int8_was_checked_by_cosine_and_nearest_neighbours_before_it_was_written(built):
    from builder.triton.repository import read_build

    _, record = read_build(built / "triton", "emb_int8")
    calibration = record["calibration"]
    assert calibration["min_cosine"] >= 0.99 and calibration["confident_neighbours_kept"] >= 0.99, calibration
    assert calibration["int8_mb"] < calibration["fp32_mb"] / 2


def test_nearest_neighbours_kept_count_only_where_fp32_is_clear():
    from builder.engine.quantize import _nearest_kept

    fp32 = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.6, 0.8]])
    fp32 /= np.linalg.norm(fp32, axis=1, keepdims=True)
    kept, clear = _nearest_kept(fp32, fp32 + 0.01)
    assert kept.all() and clear.all()
    moved = fp32.copy()
    moved[1] = [0.1, 0.995]  # text 1 moves next to text 2: every text's nearest changes
    assert not _nearest_kept(fp32, moved)[0].any()
    tied = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071]])  # text 2 is as near to 0 as to 1
    assert _nearest_kept(tied, tied)[1].tolist() == [True, True, False]


@pytest.mark.server
def test_the_client_reads_what_the_ensemble_is_and_returns_an_array(server):
    client = EmbeddingClient(server.grpc_url, "emb")
    assert (client.pooling, client.normalize, client.windowed) == ("cls", True, False)
    vectors = client.embed(SHORT)
    assert vectors.dtype == np.float32 and vectors.shape == (len(SHORT), client.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    search = EmbeddingClient(server.grpc_url, "emb_search")  # the semantic-search model: pooler, projection
    assert (search.pooling, search.dim, search.normalize) == ("pooler", 32, True)
    raw = EmbeddingClient(server.grpc_url, "emb_pooler")
    assert (raw.pooling, raw.normalize) == ("pooler", False)
    assert np.abs(np.linalg.norm(raw.embed(SHORT), axis=1) - 1.0).max() > 1e-3


@pytest.mark.server
def test_texts_of_one_intent_are_each_others_nearest_neighbours(server):
    vectors = EmbeddingClient(server.grpc_url, "emb").embed(SHORT)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -2.0)
    nearest = similarity.argmax(axis=1)
    same = [EXAMPLES[i][1] == EXAMPLES[j][1] for i, j in enumerate(nearest)]
    assert np.mean(same) >= 0.75, np.mean(same)


@pytest.mark.server
def test_a_long_document_is_read_in_windows_and_batched_with_short_texts(server):
    client = EmbeddingClient(server.grpc_url, "emb_doc")
    mixed = SHORT[:5] + [DOCUMENT] + SHORT[5:10]
    together = client.encode(mixed)
    alone = [client.encode([text])[0] for text in mixed]
    assert [a["windows"] for a in together] == [a["windows"] for a in alone]
    assert together[5]["windows"] >= 3 and not together[5]["truncated"]
    assert cosines(np.array([a["embedding"] for a in together]), np.array([a["embedding"] for a in alone])).min() \
        > 0.99999
    (cut,) = client.encode(["打开空调。" * 200_000])  # a megabyte: cut at --max-windows, flagged
    assert cut["windows"] == BuildOptions(task=Task.EMBEDDING).max_windows and cut["truncated"]


@pytest.mark.server
def test_the_cli_prints_one_vector_a_line(server, capsys):
    assert embedding_cli(["--url", server.grpc_url, "--model", "emb", SHORT[0], SHORT[1]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = EmbeddingClient(server.grpc_url, "emb").embed(SHORT[:2])
    assert [line["text"] for line in lines] == SHORT[:2]
    np.testing.assert_allclose([line["embedding"] for line in lines], expected, atol=1e-6)


@pytest.mark.server
def test_the_ensemble_tells_clients_its_dim_pooling_and_long_text(server):
    import tritonclient.grpc as grpcclient

    config = grpcclient.InferenceServerClient(server.grpc_url).get_model_config("emb_doc", as_json=True)["config"]
    parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert parameters[interface.PARAM_TASK] == "embedding" and parameters[interface.PARAM_POOLING] == "mean"
    assert parameters[interface.PARAM_LONG_TEXT] == "windows" and int(parameters[interface.PARAM_DIM]) > 0
    assert [o["name"] for o in config["output"]] == [interface.EMBEDDING, interface.WINDOWS, interface.TRUNCATED]


@pytest.mark.server
@pytest.mark.parametrize("name", ["emb", "emb_doc"])
def test_paddle_serving_answers_the_vectors_triton_does(built, server, name):
    texts = SHORT[:6] + [DOCUMENT]
    with PipelineService(built / "paddle_serving" / name) as service:
        out = subprocess.run([sys.executable, "-m", "clients.paddle_serving", "--task", "embedding", "--url",
                              service.url, *texts], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    served = [json.loads(line) for line in out.stdout.splitlines()]
    expected = EmbeddingClient(server.grpc_url, name).encode(texts)
    assert [(s["text"], s["truncated"], s.get("windows")) for s in served] == \
        [(e["text"], e["truncated"], e.get("windows")) for e in expected]
    assert cosines(np.array([s["embedding"] for s in served]), np.array([e["embedding"] for e in expected])).min() \
        > 0.99999


@pytest.mark.server
def test_the_direct_model_serves_the_source_models_vectors_batched(built, server):
    rows = [(t,) for t in SHORT] + [(DOCUMENT,)]
    report = verify(built / "triton", "emb_direct", server.grpc_url, rows, served_model="emb_direct_direct")
    assert report.passed and report.texts == len(rows), report.to_json()
    direct = EmbeddingClient(server.grpc_url, "emb_direct_direct")
    assert direct.info.per_text_rows == (interface.TRUNCATED,)  # [B, 1]; the vectors [B, dim]
    answers = direct.encode(SHORT[:3] + ["。".join(SHORT)])  # forty commands: past max_seq_len
    assert [a["truncated"] for a in answers] == [False, False, False, True]
    with pytest.raises(UserError, match="--direct"):  # its batches hold one window a text
        build(built, built / "unused", BuildOptions(task=Task.EMBEDDING, direct=True, long_text="windows"),
              show_progress=False)
