"""A small, deterministic training loop shared by the example models (seconds of CPU).

Training runs a fixed number of steps with fixed seeds, never a wall-clock budget: the same
commit gives the same model on a quiet machine and on a loaded one (only slower there).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from builder.example.vocab import generate_vocab

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExampleSpec:
    """Model size and training steps (defaults: ERNIE 3.0 Tiny Nano-like, 4 layers x 312)."""

    hidden_size: int = 312
    num_layers: int = 4
    num_heads: int = 12
    intermediate_size: int = 1248
    max_position_embeddings: int = 512
    train_steps: int = 80  # optimizer steps (fewer if dev accuracy reaches the target at an epoch's end)
    target_accuracy: float = 0.99
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def prepare(output: Path, texts: list[str], spec: ExampleSpec):
    """Vocabulary, PaddleNLP tokenizer and ErnieConfig kwargs for an example in `output`."""
    import paddle
    from paddlenlp.transformers import ErnieTokenizer

    output.mkdir(parents=True, exist_ok=True)
    vocab = generate_vocab(texts)
    write_lines(output / "vocab.txt", vocab)
    paddle.seed(spec.seed)
    tokenizer = ErnieTokenizer(str(output / "vocab.txt"), do_lower_case=True)
    config = dict(vocab_size=len(vocab), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
                  num_attention_heads=spec.num_heads, intermediate_size=spec.intermediate_size,
                  max_position_embeddings=spec.max_position_embeddings, type_vocab_size=4, pad_token_id=0)
    return tokenizer, config


def train(model, rows: list, dev: list, step: Callable, accuracy: Callable, spec: ExampleSpec,
          show_progress: bool, name: str) -> dict:
    """Train for `spec.train_steps` steps, or until dev accuracy reaches the target at an epoch's end.

    `step(model, batch_rows) -> loss tensor`; `accuracy(model, rows) -> float`.
    """
    import paddle

    optimizer = paddle.optimizer.AdamW(spec.learning_rate, parameters=model.parameters(), weight_decay=0.01)
    rng = np.random.default_rng(spec.seed)
    started, steps, score = time.perf_counter(), 0, 0.0
    bar = tqdm(desc=f"training {name}", total=spec.train_steps, unit="step", disable=not show_progress, leave=False)
    while steps < spec.train_steps:
        model.train()
        order = rng.permutation(len(rows))
        for start in range(0, len(order), spec.batch_size):
            loss = step(model, [rows[i] for i in order[start:start + spec.batch_size]])
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            steps += 1
            bar.update()
            bar.set_postfix(loss=f"{float(loss):.3f}")
            if steps >= spec.train_steps:
                break
        model.eval()
        with paddle.no_grad():
            score = accuracy(model, dev)
        if score >= spec.target_accuracy:
            break
    bar.close()
    model.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - started, 1), "dev_accuracy": round(score, 4)}


def finish(output: Path, summary: dict, name: str) -> dict:
    (output / "example.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    log.info("example %s model in %s: %s", name, output, summary)
    return summary


def token_tags(tokenizer, texts: list[str], spans: list[list[tuple[str, int, int]]], tag_ids: dict[str, int],
               max_length: int = 64):
    """PaddleNLP encoding of `texts` with one BIO tag id per token (-100 on special tokens)."""
    encoded = tokenizer(texts, max_length=max_length, truncation=True, return_offsets_mapping=True)
    labels = []
    for offsets, text_spans in zip(encoded["offset_mapping"], spans):
        row = []
        for position, (start, end) in enumerate(offsets):
            if position == 0 or (start, end) == (0, 0):
                row.append(-100)
                continue
            tag = "O"
            for slot, s, e in text_spans:
                if s <= start < e:
                    tag = ("B-" if start == s else "I-") + slot
            row.append(tag_ids[tag])
        labels.append(row)
    return encoded["input_ids"], encoded["token_type_ids"], labels


def pad(rows: list[list[int]], value: int) -> np.ndarray:
    width = max(len(r) for r in rows)
    return np.array([r + [value] * (width - len(r)) for r in rows], dtype=np.int64)
