"""A sentence-transformers directory, as sentence-transformers 6 saved it (tests/fixtures/
sentence_transformers/make_fixtures.py, run with torch in its own environment), builds with
`--task embedding` alone: modules.json honoured (Pooling, Dense, Normalize), HF BERT weights
converted, tokenizer.json tokenizing as HF does. Served vectors equal sentence-transformers' own
(committed in expected.json) on every engine, INT8 included."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from builder.build import build
from builder.engine.quantize import QuantizeOptions
from builder.example import intents
from builder.options import BuildOptions
from builder.paddle_serving.server import PipelineService
from builder.source.sentence_transformers import paddle_name, read_layout
from builder.verify import cosines, verify
from clients.embedding import EmbeddingClient
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind
from serving_core.tokenization import ErnieTokenizer, TokenizerSettings

FIXTURES = Path(__file__).parent / "fixtures" / "sentence_transformers"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
TEXTS = EXPECTED["texts"]
MODELS = ("mean_normalize", "cls_dense")


def _reference(name: str) -> np.ndarray:
    return np.array(EXPECTED[name]["vectors"], dtype=np.float32)


def test_modules_are_read_as_sentence_transformers_saved_them():
    mean = read_layout(FIXTURES / "mean_normalize")
    assert (mean.pooling, mean.dense, mean.normalize, mean.max_seq_length) == ("mean", (), True, 32)
    dense = read_layout(FIXTURES / "cls_dense")
    assert (dense.pooling, dense.normalize, dense.dim) == ("cls", False, 32)
    assert dense.dense[0].weight.shape == (32, 64) and dense.dense[0].activation == "tanh"


def test_the_older_layout_with_pooling_flags_and_sentence_bert_config_is_read(tmp_path):
    model = shutil.copytree(FIXTURES / "mean_normalize", tmp_path / "old")
    modules = json.loads((model / "modules.json").read_text())
    for module in modules:  # sentence-transformers 2.x names
        module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[-1]
    (model / "modules.json").write_text(json.dumps(modules))
    (model / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 64, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (model / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    layout = read_layout(model)
    assert (layout.pooling, layout.normalize, layout.max_seq_length) == ("cls", True, 24)


@pytest.mark.parametrize("change, message", [
    (lambda m: _set_module(m, 1, type="sentence_transformers.models.CNN"), "CNN"),
    (lambda m: _set_module(m, 1, path="../elsewhere"), "subfolder"),
    (lambda m: _set_module(m, 0, path="0_Transformer"), "root"),
    (lambda m: (m / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "max"})), "pools by"),
    (lambda m: (m / "model.safetensors").rename(m / "pytorch_model.bin"), "pickle"),
    (lambda m: _edit_json(m / "config.json", model_type="roberta"), "model_type"),
])
def test_what_the_builder_cannot_serve_is_refused_by_name(tmp_path, change, message):
    model = shutil.copytree(FIXTURES / "mean_normalize", tmp_path / "model")
    change(model)
    with pytest.raises(UserError, match=message):
        build(model, tmp_path / "repo", BuildOptions(task=Task.EMBEDDING), show_progress=False)
    assert not (tmp_path / "repo").exists()


def _set_module(model: Path, index: int, **values) -> None:
    modules = json.loads((model / "modules.json").read_text())
    modules[index].update(values)
    (model / "modules.json").write_text(json.dumps(modules))


def _edit_json(path: Path, **values) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


def test_hf_bert_names_become_paddlenlp_names_with_linear_weights_transposed():
    assert paddle_name("encoder.layer.3.attention.self.query.weight") == ("encoder.layers.3.self_attn.q_proj.weight",
                                                                          True)
    assert paddle_name("encoder.layer.0.output.LayerNorm.bias") == ("encoder.layers.0.norm2.bias", False)
    assert paddle_name("embeddings.LayerNorm.weight") == ("embeddings.layer_norm.weight", False)
    assert paddle_name("embeddings.word_embeddings.weight") == ("embeddings.word_embeddings.weight", False)


@pytest.mark.parametrize("name", MODELS)
def test_the_served_tokenizer_gives_hf_tokenizer_ids_from_tokenizer_json(name):
    tokenizer = ErnieTokenizer.from_files(FIXTURES / name / "tokenizer.json",
                                          TokenizerSettings(vocab_file="tokenizer.json", max_seq_len=32))
    batch = tokenizer.encode(TEXTS)
    served = [batch.input_ids[i, : batch.lengths[i]].tolist() for i in range(len(TEXTS))]
    assert served == EXPECTED[name]["input_ids"]
    assert batch.truncated.tolist() == [len(ids) == 32 and i == len(TEXTS) - 1 for i, ids in enumerate(served)]


VARIANTS = {
    "st_mean": ("mean_normalize", {"target": "all"}),  # --task embedding alone: the fastest correct engine
    "st_mean_paddle": ("mean_normalize", {"runtime": RuntimeKind.PADDLE}),
    "st_mean_ort": ("mean_normalize", {"runtime": RuntimeKind.ONNXRUNTIME}),
    "st_mean_openvino": ("mean_normalize", {"runtime": RuntimeKind.OPENVINO}),
    "st_dense": ("cls_dense", {}),
    "st_dense_int8": ("cls_dense", {"runtime": RuntimeKind.ONNXRUNTIME, "quantize": "int8"}),
}
INT8_TOLERANCE = 0.01  # cosine 0.99, the build's INT8 gate


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    output = tmp_path_factory.mktemp("sentence_transformers")
    calibration = output / "calibration.txt"
    calibration.write_text("\n".join(TEXTS + [t for t, _ in intents.examples(3)[:200]]) + "\n", encoding="utf-8")
    for name, (model, extra) in VARIANTS.items():
        where = output if extra.get("target") == "all" else output / "triton"
        if "quantize" in extra:
            extra = {**extra, "quantize_options": QuantizeOptions(calibration_file=calibration)}
        build(FIXTURES / model, where, BuildOptions(task=Task.EMBEDDING, name=name, **extra), show_progress=False)
    return output


@pytest.mark.server
@pytest.mark.parametrize("name", list(VARIANTS))
def test_served_vectors_are_sentence_transformers_own_on_every_engine(server, name):
    model = VARIANTS[name][0]
    served = EmbeddingClient(server.grpc_url, name).embed(TEXTS)
    least = 1.0 - INT8_TOLERANCE if "quantize" in VARIANTS[name][1] else 0.9999
    assert cosines(served, _reference(model)).min() >= least
    if model == "cls_dense":  # no Normalize module: the vectors come back as sentence-transformers computes them
        assert np.abs(np.linalg.norm(served, axis=1) - 1.0).max() > 1e-3


@pytest.mark.server
@pytest.mark.parametrize("name", list(VARIANTS))
def test_verify_passes_against_the_converted_source_model(built, server, name):
    rows = [(t,) for t in TEXTS]
    tolerance = INT8_TOLERANCE if "quantize" in VARIANTS[name][1] else 1e-4
    report = verify(built / "triton", name, server.grpc_url, rows, tolerance=tolerance)
    assert report.passed and report.texts == len(rows), report.to_json()


@pytest.mark.server
def test_paddle_serving_answers_sentence_transformers_vectors(built):
    with PipelineService(built / "paddle_serving" / "st_mean") as service:
        out = subprocess.run([sys.executable, "-m", "clients.paddle_serving", "--task", "embedding", "--url",
                              service.url, *TEXTS], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    served = np.array([json.loads(line)["embedding"] for line in out.stdout.splitlines()], dtype=np.float32)
    assert cosines(served, _reference("mean_normalize")).min() >= 0.9999


@pytest.mark.server
def test_verify_without_texts_says_which_flag_to_pass(built, caplog):
    from builder.cli import main

    assert main(["verify", str(built / "triton"), "--name", "st_dense"]) == 2  # before any server starts
    assert "--texts FILE" in caplog.text and "no data.txt" in caplog.text
