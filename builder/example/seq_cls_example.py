"""`builder make-example --task seq_cls`: a small intent classifier, trained for seconds."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import intents
from .vocab import generate_vocab

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExampleSpec:
    """Model size and training budget (defaults: ERNIE 3.0 Tiny Nano-like, 4 layers x 312)."""

    hidden_size: int = 312
    num_layers: int = 4
    num_heads: int = 12
    intermediate_size: int = 1248
    max_position_embeddings: int = 512
    train_seconds: float = 30.0
    target_accuracy: float = 0.99
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_seq_cls_example(output: Path, spec: ExampleSpec = ExampleSpec(), show_progress: bool = True) -> dict:
    """Write a PaddleNLP checkpoint (config, weights, tokenizer, label.txt) plus its data files."""
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForSequenceClassification, ErnieTokenizer

    output.mkdir(parents=True, exist_ok=True)
    labels = intents.labels()
    data = intents.examples(spec.seed)
    split = int(len(data) * 0.9)
    train, dev = intents.balanced(data[:split], spec.seed), data[split:]
    vocab = generate_vocab([t for t, _ in data] + intents.DEMO_TEXTS)
    _write_lines(output / "vocab.txt", vocab)
    _write_lines(output / "label.txt", labels)
    _write_lines(output / "train.txt", [f"{t}\t{l}" for t, l in train])
    _write_lines(output / "dev.txt", [f"{t}\t{l}" for t, l in dev])
    _write_lines(output / "data.txt", intents.DEMO_TEXTS)

    paddle.seed(spec.seed)
    tokenizer = ErnieTokenizer(str(output / "vocab.txt"), do_lower_case=True)
    config = ErnieConfig(vocab_size=len(vocab), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
                         num_attention_heads=spec.num_heads, intermediate_size=spec.intermediate_size,
                         max_position_embeddings=spec.max_position_embeddings, type_vocab_size=4,
                         pad_token_id=0, num_labels=len(labels),
                         id2label={i: l for i, l in enumerate(labels)}, label2id={l: i for i, l in enumerate(labels)})
    model = ErnieForSequenceClassification(config)
    label_ids = {l: i for i, l in enumerate(labels)}

    def batch(rows):
        enc = tokenizer([t for t, _ in rows], max_length=64, padding=True, truncation=True, return_tensors="pd")
        return enc["input_ids"], enc["token_type_ids"], paddle.to_tensor([label_ids[l] for _, l in rows])

    optimizer = paddle.optimizer.AdamW(spec.learning_rate, parameters=model.parameters(), weight_decay=0.01)
    loss_fn = paddle.nn.CrossEntropyLoss()
    rng = np.random.default_rng(spec.seed)
    started, steps, accuracy = time.perf_counter(), 0, 0.0
    bar = tqdm(desc="training example", unit="step", disable=not show_progress, leave=False)
    model.train()
    while time.perf_counter() - started < spec.train_seconds:
        order = rng.permutation(len(train))
        for start in range(0, len(order), spec.batch_size):
            ids, types, gold = batch([train[i] for i in order[start:start + spec.batch_size]])
            loss = loss_fn(model(ids, token_type_ids=types), gold)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            steps += 1
            bar.update()
            bar.set_postfix(loss=f"{float(loss):.3f}")
        accuracy = _accuracy(model, batch, dev)
        model.train()
        if accuracy >= spec.target_accuracy:
            break
    bar.close()
    model.eval()
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    summary = {"labels": len(labels), "train": len(train), "dev": len(dev), "vocab": len(vocab), "steps": steps,
               "seconds": round(time.perf_counter() - started, 1), "dev_accuracy": round(accuracy, 4)}
    (output / "example.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    log.info("example seq_cls model in %s: %s", output, summary)
    return summary


def _accuracy(model, batch, rows) -> float:
    import paddle

    model.eval()
    with paddle.no_grad():
        ids, types, gold = batch(rows)
        predicted = model(ids, token_type_ids=types).argmax(axis=-1)
    return float((predicted == gold).astype("float32").mean())
