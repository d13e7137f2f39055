"""Builder failures: clear messages naming the file, no partial output, no clobbering."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from builder.build import build
from builder.options import BuildOptions
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

# Engine choice is test_engine_timing's subject: these builds pin one engine.
OPTIONS = BuildOptions(task=Task.SEQ_CLS, name="intent", runtime=RuntimeKind.ONNXRUNTIME)


def _copy(model: Path, tmp_path: Path, name: str = "model") -> Path:
    target = tmp_path / name
    shutil.copytree(model, target)
    return target


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".staging-" in p.name]


def test_missing_vocab(static_export, tmp_path):
    model = _copy(static_export, tmp_path)
    (model / "vocab.txt").unlink()
    with pytest.raises(UserError, match="no vocab.txt.*--tokenizer") as info:
        build(model, tmp_path / "repo", OPTIONS, show_progress=False)
    assert str(model) in str(info.value)
    assert not (tmp_path / "repo").exists() and not _leftovers(tmp_path)


def test_tokenizer_dir_flag(static_export, tmp_path):
    model = _copy(static_export, tmp_path)
    tokenizer = tmp_path / "tok"
    tokenizer.mkdir()
    shutil.move(model / "vocab.txt", tokenizer / "vocab.txt")
    report = build(model, tmp_path / "repo", replace(OPTIONS, name=None, tokenizer_dir=tokenizer),
                   show_progress=False)
    assert report.ensemble == "model"


def test_label_count_mismatch(static_export, tmp_path):
    model = _copy(static_export, tmp_path)
    (model / "label.txt").write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(UserError, match="3 class labels but the model has 8 outputs"):
        build(model, tmp_path / "repo", OPTIONS, show_progress=False)
    assert not (tmp_path / "repo").exists() and not _leftovers(tmp_path)


def test_labels_from_config_when_no_label_file(example_model, tmp_path):
    model = _copy(example_model, tmp_path)
    (model / "label.txt").unlink()
    report = build(model, tmp_path / "repo", OPTIONS, show_progress=False)
    assert report.labels[0] == "music.play"


def test_duplicate_labels(static_export, tmp_path):
    model = _copy(static_export, tmp_path)
    (model / "label.txt").write_text("a\na\n" + "x\n" * 6, encoding="utf-8")
    with pytest.raises(UserError, match="more than once"):
        build(model, tmp_path / "repo", OPTIONS, show_progress=False)


def test_unknown_format(tmp_path):
    model = tmp_path / "weird"
    model.mkdir()
    (model / "model.bin").write_bytes(b"\0")
    with pytest.raises(UserError, match="unknown model format.*model.bin"):
        build(model, tmp_path / "repo", OPTIONS, show_progress=False)


def test_checkpoint_without_weights(example_model, tmp_path):
    model = _copy(example_model, tmp_path)
    (model / "model_state.pdparams").unlink()
    with pytest.raises(UserError, match="config.json is there but no weights"):
        build(model, tmp_path / "repo", OPTIONS, show_progress=False)


def test_max_seq_len_over_the_model_limit(static_export, example_model, tmp_path):
    with pytest.raises(UserError, match="max_position_embeddings"):
        build(example_model, tmp_path / "repo", BuildOptions(task=Task.SEQ_CLS, max_seq_len=4096),
              show_progress=False)


def test_existing_repository_is_never_clobbered(static_export, tmp_path):
    repo = tmp_path / "repo"
    build(static_export, repo, OPTIONS, show_progress=False)
    config = (repo / "intent" / "config.pbtxt").read_text()
    # Same names again without --overwrite: refused, untouched.
    with pytest.raises(UserError, match="--overwrite"):
        build(static_export, repo, OPTIONS, show_progress=False)
    # A failing build with --overwrite: the good repository stays as it was.
    broken = _copy(static_export, tmp_path, "broken")
    (broken / "label.txt").write_text("only-one\n", encoding="utf-8")
    with pytest.raises(UserError):
        build(broken, repo, BuildOptions(task=Task.SEQ_CLS, name="intent", overwrite=True), show_progress=False)
    assert (repo / "intent" / "config.pbtxt").read_text() == config
    assert not _leftovers(tmp_path)
    # A good build with --overwrite replaces it; a second ensemble lives beside it.
    build(static_export, repo, BuildOptions(task=Task.SEQ_CLS, name="intent", overwrite=True, max_seq_len=32,
                                             runtime=RuntimeKind.ONNXRUNTIME),
          show_progress=False)
    assert '"max_seq_len"' in (repo / "intent" / "config.pbtxt").read_text()
    build(static_export, repo, BuildOptions(task=Task.SEQ_CLS, name="other", runtime=RuntimeKind.ONNXRUNTIME),
        show_progress=False)
    assert {p.name for p in repo.iterdir()} == {"intent", "intent_tokenizer", "intent_model", "intent_postprocess",
                                                "other", "other_tokenizer", "other_model", "other_postprocess"}


def test_output_is_a_file(static_export, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        build(static_export, target, OPTIONS, show_progress=False)


def test_cli_exit_code_and_message(static_export, tmp_path, capsys):
    from builder.cli import main

    code = main(["build", "--task", "seq_cls", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "r")])
    assert code == 2


def test_label_count_mismatch_on_a_checkpoint_names_the_users_directory(example_model, tmp_path):
    model = _copy(example_model, tmp_path)
    (model / "label.txt").write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(UserError, match="3 class labels") as info:
        build(model, tmp_path / "repo", OPTIONS, show_progress=False)
    assert str(model) in str(info.value) and "ernie-build-" not in str(info.value)


def test_a_checkpoint_of_another_task_names_its_task(example_model, tmp_path):
    with pytest.raises(UserError, match="ErnieForSequenceClassification.*build it with --task seq_cls") as info:
        build(example_model, tmp_path / "repo", BuildOptions(task=Task.TOKEN_CLS), show_progress=False)
    assert "config.json" in str(info.value)


def test_a_program_of_another_task_names_its_task(static_export, tmp_path):
    with pytest.raises(UserError, match="fit --task seq_cls"):
        build(static_export, tmp_path / "repo", BuildOptions(task=Task.TOKEN_CLS, labels_file=static_export /
                                                             "label.txt"), show_progress=False)


def test_a_bom_is_not_part_of_the_first_label(static_export, tmp_path):
    model = _copy(static_export, tmp_path)
    labels = (model / "label.txt").read_text(encoding="utf-8")
    (model / "label.txt").write_bytes(b"\xef\xbb\xbf" + labels.encode("utf-8"))
    report = build(model, tmp_path / "repo", OPTIONS, show_progress=False)
    assert report.labels[0] == labels.split()[0]


def test_a_vocabulary_without_unk_is_named(static_export, tmp_path):
    model = _copy(static_export, tmp_path)
    vocab = model / "vocab.txt"
    vocab.write_text("\n".join(t for t in vocab.read_text(encoding="utf-8").splitlines() if t != "[UNK]") + "\n",
                     encoding="utf-8")
    with pytest.raises(UserError, match=r"\[UNK\].*not in the vocabulary") as info:
        build(model, tmp_path / "repo", OPTIONS, show_progress=False)
    assert str(vocab) in str(info.value)


def test_model_config_init_args_bound_max_seq_len(static_export, tmp_path):
    import json

    model = _copy(static_export, tmp_path)
    for name in ("config.json", "model_config.json"):
        (model / name).unlink(missing_ok=True)
    (model / "model_config.json").write_text(json.dumps({
        "init_class": "ErnieForSequenceClassification", "num_classes": 8,
        "init_args": [{"init_class": "ErnieModel", "init_args": [], "vocab_size": 40000,
                       "max_position_embeddings": 512}]}), encoding="utf-8")
    with pytest.raises(UserError, match=r"--max-seq-len 600 exceeds the config's max_position_embeddings \(512 "):
        build(model, tmp_path / "repo", BuildOptions(task=Task.SEQ_CLS, max_seq_len=600), show_progress=False)


@pytest.mark.models  # exports a model with PaddleNLP
def test_the_position_table_of_the_weights_bounds_max_seq_len(tmp_path):
    """The seed's compression recipe prunes the position table to max_seq_length (16) while the
    config keeps its 2048: the build reads the table's rows from the program and serves at most
    that many tokens, by default and against --max-seq-len."""
    import json

    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForSequenceClassification, ErnieTokenizer

    from builder.example.vocab import generate_vocab
    from builder.triton.repository import read_build
    from serving_core.program import find_program, position_rows

    source = tmp_path / "pruned_positions"
    source.mkdir()
    (source / "vocab.txt").write_text("\n".join(generate_vocab(["打开空调"])) + "\n", encoding="utf-8")
    config = ErnieConfig(vocab_size=3200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=16, type_vocab_size=4, num_labels=3,
                         use_task_id=True, task_type_vocab_size=3)
    model = ErnieForSequenceClassification(config)
    model.eval()
    specs = [paddle.static.InputSpec([None, None], "int64", name) for name in ("input_ids", "token_type_ids")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=specs, full_graph=True), str(source / "inference"))
    ErnieTokenizer(str(source / "vocab.txt")).save_pretrained(str(source))
    (source / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))  # what the recipe leaves
    assert position_rows(find_program(source)) == 16  # not the task-type table (3 rows, computed ids too)
    build(source, tmp_path / "repo", BuildOptions(task=Task.SEQ_CLS, name="short", runtime=RuntimeKind.ONNXRUNTIME),
        show_progress=False)
    spec, _ = read_build(tmp_path / "repo", "short")
    assert spec.tokenizer.max_seq_len == 16
    with pytest.raises(UserError, match=r"exceeds the program's position table \(16 positions\); use at most 16"):
        build(source, tmp_path / "repo2", BuildOptions(task=Task.SEQ_CLS, max_seq_len=64), show_progress=False)
