"""`builder make-example --task embedding`: the intent classifier's encoder, saved alone.

Its [CLS] vectors were trained to tell the intents apart, so texts of one intent lie close
together: nearest neighbours are a meaningful check of the served vectors.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from builder.example.seq_cls_example import make_seq_cls_example
from builder.example.training import ExampleSpec, finish

# What the encoder directory keeps of the classifier's: tokenizer files and the demo texts.
_KEPT = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "data.txt", "dev.txt", "train.txt")


def save_encoder(classifier: Path, output: Path) -> None:
    """The encoder of a PaddleNLP sequence classifier checkpoint as its own checkpoint
    (ErnieModel's save_pretrained: `architectures` names the encoder), tokenizer files beside it."""
    from builder.source.detect import inspect_source
    from builder.source.export import load_dygraph_model
    from serving_core.interface import Task

    model = load_dygraph_model(inspect_source(classifier), Task.SEQ_CLS)
    output.mkdir(parents=True, exist_ok=True)
    getattr(model, model.base_model_prefix).save_pretrained(str(output))
    for name in _KEPT:
        if (classifier / name).is_file():
            shutil.copy2(classifier / name, output / name)


def make_embedding_example(output: Path, spec: ExampleSpec = ExampleSpec(), show_progress: bool = True) -> dict:
    """Train the seq_cls example, then keep its encoder in `output`."""
    with tempfile.TemporaryDirectory(prefix="ernie-classifier-") as work:
        summary = make_seq_cls_example(Path(work) / "classifier", spec, show_progress)
        save_encoder(Path(work) / "classifier", Path(output))
    return finish(Path(output), {"encoder_of": "seq_cls example", **summary}, "embedding")
