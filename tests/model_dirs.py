"""Small model directories made by the real tools, for the intake tests and the fuzzer."""
from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXTS = ["打开空调", "播放周杰伦的花心", "导航到北京西站"]


def make_checkpoint(directory: Path, **save_options) -> Path:
    """A tiny PaddleNLP ERNIE classifier as save_pretrained writes it, with its tokenizer."""
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForSequenceClassification, ErnieTokenizer

    from builder.example.vocab import generate_vocab

    directory.mkdir(parents=True)
    (directory / "vocab.txt").write_text("\n".join(generate_vocab(TEXTS)) + "\n", encoding="utf-8")
    tokenizer = ErnieTokenizer(str(directory / "vocab.txt"))
    paddle.seed(3)
    config = ErnieConfig(vocab_size=len(tokenizer.vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, num_labels=3)
    model = ErnieForSequenceClassification(config)
    model.eval()
    model.save_pretrained(str(directory), **save_options)
    tokenizer.save_pretrained(str(directory))
    (directory / "label.txt").write_text("climate\nmusic\nnavigation\n", encoding="utf-8")
    (directory / "data.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return directory


def make_static_export(checkpoint: Path, directory: Path) -> Path:
    """`checkpoint` exported by paddle.jit.save (PIR), its tokenizer and labels beside it."""
    from builder.source.detect import inspect_source
    from builder.source.export import export_checkpoint
    from serving_core.interface import Task

    export_checkpoint(inspect_source(checkpoint), Task.SEQ_CLS, directory)
    for name in ("vocab.txt", "tokenizer_config.json", "label.txt", "data.txt"):
        shutil.copy2(checkpoint / name, directory / name)
    return directory


def copy_fixture(relative: str, directory: Path, extra: dict[str, str] | None = None) -> Path:
    """A committed fixture directory copied (writable), with extra files {name: fixture path}."""
    shutil.copytree(FIXTURES / relative, directory)
    for name, source in (extra or {}).items():
        shutil.copy(FIXTURES / source, directory / name)
    for path in directory.iterdir():
        path.chmod(0o644)
    return directory
