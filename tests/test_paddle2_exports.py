"""Paddle 2.x static exports, as Paddle 2.6 + PaddleNLP 2.8 wrote them (tests/fixtures/paddle2,
made by its make_fixtures.py in its own environment), under the names PaddleNLP's scripts use.
Each builds with the tokenizer and labels given apart (those scripts write no tokenizer files
beside the export), serves on the real server on Paddle and ONNX Runtime, and answers what
Paddle 2.6 itself computed for the same texts (expected.json)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from builder.build import build
from builder.options import BuildOptions
from builder.engine.quantize import QuantizeOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from clients.seq_cls import SeqClsClient
from clients.token_cls import TokenClsClient
from serving_core.interface import Task
from serving_core.program import find_program, is_quantized, read_signature
from serving_core.runtime import RuntimeKind
from serving_core.seq_cls import softmax
from serving_core.token_cls import TokenClsSettings, decode_entities

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "paddle2"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
SEQ_CLS_LAYOUTS = {"multi_class": "multi_class/export", "ernie3_seq_cls": "ernie3_seq_cls", "trainer": "trainer"}
CALIBRATION = FIXTURES / "calibration.txt"
RUNTIMES = {"paddle": {"runtime": RuntimeKind.PADDLE}, "ort": {"runtime": RuntimeKind.ONNXRUNTIME},
            "int8": {"runtime": RuntimeKind.ONNXRUNTIME, "quantize": "int8",
                     "quantize_options": QuantizeOptions(calibration_file=CALIBRATION)}}
TOLERANCE = {"paddle": 1e-4, "ort": 1e-4, "int8": 1e-3}  # probabilities of a random-weight model, all near 1/3


@pytest.mark.parametrize("layout", [*SEQ_CLS_LAYOUTS.values(), "ernie3_token_cls"])
def test_legacy_programs_are_read_and_not_mistaken_for_int8(layout):
    files = find_program(FIXTURES / layout)
    signature = read_signature(files)
    assert [t.name for t in signature.inputs] == ["input_ids", "token_type_ids"]
    assert signature.outputs[0].name.startswith("save_infer_model/")
    assert not is_quantized(files)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repository = tmp_path_factory.mktemp("paddle2") / "repo"
    tokenizer = FIXTURES / "tokenizer"
    for name, layout in SEQ_CLS_LAYOUTS.items():
        for runtime_name, runtime in RUNTIMES.items():
            build(FIXTURES / layout, repository, BuildOptions(
                task=Task.SEQ_CLS, name=f"{name}_{runtime_name}", **runtime, tokenizer_dir=tokenizer,
                labels_file=FIXTURES / "seq_labels.txt", max_seq_len=64), show_progress=False)
    for runtime_name, runtime in list(RUNTIMES.items())[:2]:
        build(FIXTURES / "ernie3_token_cls", repository, BuildOptions(
            task=Task.TOKEN_CLS, name=f"token_cls_{runtime_name}", **runtime, tokenizer_dir=tokenizer,
            labels_file=FIXTURES / "tags.txt", max_seq_len=64), show_progress=False)
    with TritonServer(repository, ServerPorts.free()) as server:
        yield server


@pytest.mark.server
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("layout", SEQ_CLS_LAYOUTS)
def test_seq_cls_exports_answer_what_paddle_2_6_computed(served, layout, runtime):
    expected = softmax(np.array(EXPECTED["seq_cls"], dtype=np.float32))
    probabilities = SeqClsClient(served.grpc_url, f"{layout}_{runtime}").probabilities(EXPECTED["texts"])
    assert np.abs(probabilities - expected).max() < TOLERANCE[runtime]


@pytest.mark.server
@pytest.mark.parametrize("runtime", ["paddle", "ort"])
def test_token_cls_export_answers_what_paddle_2_6_computed(served, runtime):
    from serving_core.tokenization import ErnieTokenizer, settings_from_tokenizer_config

    labels = tuple((FIXTURES / "tags.txt").read_text(encoding="utf-8").split())
    tokenizer = ErnieTokenizer.from_files(FIXTURES / "tokenizer" / "vocab.txt",
                                          settings_from_tokenizer_config(FIXTURES / "tokenizer", 64))
    logits = np.array(EXPECTED["token_cls"], dtype=np.float32)
    served_entities = TokenClsClient(served.grpc_url, f"token_cls_{runtime}").entities(EXPECTED["texts"])
    for row, (text, answer) in enumerate(zip(EXPECTED["texts"], served_entities)):
        pieces = tokenizer.pieces([text])[0]
        offsets = np.array(pieces.offsets, dtype=np.int64).reshape(-1, 2)
        probabilities = softmax(logits[row, 1: 1 + len(offsets)])
        expected = decode_entities(text, probabilities, offsets, TokenClsSettings(labels))
        assert [e.to_json() for e in expected] == [
            {**e, "score": pytest.approx(e["score"], abs=1e-4)} for e in answer["entities"]]


@pytest.mark.server
@pytest.mark.parametrize("name", [f"{layout}_{runtime}" for layout in SEQ_CLS_LAYOUTS for runtime in ("paddle", "ort")]
                         + ["token_cls_paddle", "token_cls_ort"])
def test_verify_uses_the_tokenizer_and_labels_the_build_recorded(served, name):
    from builder.verify import verify

    report = verify(served.repository, name, served.grpc_url, [(t,) for t in EXPECTED["texts"]])
    assert report.passed, report.to_json()


def _tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_corrupt_or_truncated_weights_fail_the_build_and_leave_the_repository_as_it_was(tmp_path):
    from serving_core.errors import UserError

    repository = tmp_path / "repo"
    options = dict(task=Task.SEQ_CLS, name="intent", tokenizer_dir=FIXTURES / "tokenizer",
                   labels_file=FIXTURES / "seq_labels.txt", max_seq_len=64)
    build(FIXTURES / "ernie3_seq_cls", repository, BuildOptions(**options), show_progress=False)
    before = _tree(repository)
    params = (FIXTURES / "ernie3_seq_cls" / "inference.pdiparams").read_bytes()
    for damage, content in [("truncated", params[: len(params) // 2]), ("garbage", bytes(len(params)))]:
        model = tmp_path / damage
        model.mkdir()
        (model / "inference.pdmodel").write_bytes((FIXTURES / "ernie3_seq_cls" / "inference.pdmodel").read_bytes())
        (model / "inference.pdiparams").write_bytes(content)
        for runtime in RUNTIMES.values():
            # Refused by the parameters file's own check (declared sizes against the file) or, where the
            # damage keeps the stream's shape, by Paddle.
            with pytest.raises(UserError, match="is not a Paddle parameters file Paddle could read|cannot run with "
                                                "these weights") as failure:
                build(model, repository, BuildOptions(**options, **runtime, overwrite=True), show_progress=False)
            assert str(model / "inference.pdiparams") in str(failure.value)
            assert _tree(repository) == before


def test_two_programs_in_one_folder_are_listed_and_one_is_chosen(tmp_path):
    import shutil

    from serving_core.errors import UserError

    model = tmp_path / "two"
    shutil.copytree(FIXTURES / "ernie3_seq_cls", model)
    for suffix in (".pdmodel", ".pdiparams"):
        shutil.copy2(FIXTURES / "trainer" / f"model{suffix}", model / f"model{suffix}")
    options = dict(task=Task.SEQ_CLS, tokenizer_dir=FIXTURES / "tokenizer", labels_file=FIXTURES / "seq_labels.txt")
    with pytest.raises(UserError, match=r"holds 2 programs \(inference.pdmodel, model.pdmodel\); choose one"):
        build(model, tmp_path / "repo", BuildOptions(**options), show_progress=False)
    report = build(model, tmp_path / "repo", BuildOptions(**options, program_file="model.pdmodel"),
                   show_progress=False)
    assert report.labels == ("music", "navigation", "climate")


@pytest.mark.server
def test_a_vocab_txt_alone_is_a_tokenizer_for_build_and_verify(tmp_path):
    from builder.verify import verify

    bare = tmp_path / "vocab_only"
    bare.mkdir()
    (bare / "vocab.txt").write_bytes((FIXTURES / "tokenizer" / "vocab.txt").read_bytes())
    repository = tmp_path / "repo"
    build(FIXTURES / "ernie3_seq_cls", repository, BuildOptions(
        task=Task.SEQ_CLS, name="bare", tokenizer_dir=bare, labels_file=FIXTURES / "seq_labels.txt", max_seq_len=64),
        show_progress=False)
    with TritonServer(repository, ServerPorts.free()) as server:
        assert verify(repository, "bare", server.grpc_url, [(t,) for t in EXPECTED["texts"]]).passed


@pytest.mark.server
def test_verify_cli_exit_codes_keep_could_not_run_apart_from_answers_differ(served, tmp_path):
    import subprocess
    import sys

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(EXPECTED["texts"]) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "builder", "verify", str(served.repository), "--name", "ernie3_seq_cls_paddle",
               "--url", served.grpc_url, "--texts", str(texts)]
    assert subprocess.run(command, capture_output=True, timeout=600).returncode == 0
    missing = subprocess.run([*command, "--model", str(tmp_path / "gone")], capture_output=True, text=True,
                             timeout=600)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    differ = subprocess.run([*command, "--tolerance", "-1"], capture_output=True, timeout=600)
    assert differ.returncode == 1


def test_inspect_takes_the_tokenizer_and_labels_as_build_does():
    import subprocess
    import sys

    command = [sys.executable, "-m", "builder", "inspect", str(FIXTURES / "ernie3_seq_cls")]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--tokenizer" in refused.stderr
    done = subprocess.run([*command, "--tokenizer", str(FIXTURES / "tokenizer"), "--labels",
                           str(FIXTURES / "seq_labels.txt")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["quantized"] is False and "music" in json.dumps(info, ensure_ascii=False)
