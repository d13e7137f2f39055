"""Models of the sizes users deploy, made from PaddleNLP's own configurations: random weights
(seeded), a vocabulary of the configuration's real size, `save_pretrained`; nothing downloaded.

    medium    ernie-3.0-medium-zh  6 x 768, 12 heads, FFN 3072, vocab 40000 (the seeds' headline)
    nano      ernie-3.0-nano-zh    4 x 312
    base      ernie-3.0-base-zh    12 x 768
    xbase     ernie-3.0-xbase-zh   20 x 1024, 16 heads, FFN 4096
    tinybert  tinybert-4l-312d-zh  4 x 312, 12 heads, FFN 1200
"""
from __future__ import annotations

from pathlib import Path

CONFIGS = {"medium": ("ernie", "ernie-3.0-medium-zh"), "nano": ("ernie", "ernie-3.0-nano-zh"),
           "base": ("ernie", "ernie-3.0-base-zh"), "xbase": ("ernie", "ernie-3.0-xbase-zh"),
           "tinybert": ("tinybert", "tinybert-4l-312d-zh")}
NUM_LABELS = 15  # TNEWS, the seeds' CPU benchmark task


def ensure_model(size: str, directory: Path, seed: int = 1) -> Path:
    """A seq_cls checkpoint of `size` in `directory` (made once; `model.json` marks it complete)."""
    import json

    import paddle
    import paddlenlp.transformers as transformers

    from builder.example.vocab import generate_vocab

    directory = Path(directory)
    if (directory / "model.json").is_file():
        return directory
    family, name = CONFIGS[size]
    if family == "ernie":
        from paddlenlp.transformers.ernie.configuration import ERNIE_PRETRAINED_INIT_CONFIGURATION as known
        config_class, model_class = transformers.ErnieConfig, transformers.ErnieForSequenceClassification
    else:
        from paddlenlp.transformers.tinybert.configuration import TINYBERT_PRETRAINED_INIT_CONFIGURATION as known
        config_class, model_class = transformers.TinyBertConfig, transformers.TinyBertForSequenceClassification
    settings = {**known[name], "num_labels": NUM_LABELS}
    paddle.seed(seed)
    model = model_class(config_class(**settings))
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    vocab = generate_vocab(["打开空调"])
    vocab += [f"[unused{i}]" for i in range(settings["vocab_size"] - len(vocab))]
    (directory / "vocab.txt").write_text("\n".join(vocab[: settings["vocab_size"]]) + "\n", encoding="utf-8")
    transformers.ErnieTokenizer(str(directory / "vocab.txt")).save_pretrained(str(directory))
    (directory / "label.txt").write_text("\n".join(f"class_{i}" for i in range(NUM_LABELS)) + "\n", encoding="utf-8")
    from .workloads import make_texts

    (directory / "data.txt").write_text("\n".join(make_texts(200, False, seed=seed)) + "\n", encoding="utf-8")
    (directory / "model.json").write_text(json.dumps({"size": size, "config": name, "seed": seed}), encoding="utf-8")
    return directory


if __name__ == "__main__":  # python -m benchmarks.sizes SIZE DIRECTORY
    import sys

    ensure_model(sys.argv[1], Path(sys.argv[2]))
