"""Sequence classification decoding: logits -> class, confidence, probabilities."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeqClsSettings:
    """Postprocess options; `labels` index = class id."""

    labels: tuple[str, ...]
    multi_label: bool = False
    threshold: float = 0.5
    # --long-text windows: how a document's windows make one answer ("" : one window per text)
    aggregate: str = ""

    def __post_init__(self):
        if self.aggregate not in ("", *AGGREGATES):
            raise ValueError(f"aggregate {self.aggregate!r} is not one of {AGGREGATES}")


# How the windows of one long text make its answer:
# mean: the mean of the windows' logits, then softmax (sigmoid for multi-label);
# max: the most probable windows' probabilities, class by class.
AGGREGATES = ("mean", "max")


def default_aggregate(multi_label: bool) -> str:
    """mean for single-label (one distribution over the document), max for multi-label (a label
    any part of the document carries)."""
    return "max" if multi_label else "mean"


@dataclass
class SeqClsBatch:
    label: np.ndarray  # int64 [B]
    confidence: np.ndarray  # float32 [B]
    probabilities: np.ndarray  # float32 [B, C]
    selected: np.ndarray  # bool [B, C]; multi-label decisions (single-label: one-hot argmax)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def probabilities_of(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    logits = logits.astype(np.float32, copy=False)
    return sigmoid(logits) if multi_label else softmax(logits)


def decode(logits: np.ndarray, settings: SeqClsSettings) -> SeqClsBatch:
    """Softmax + argmax, or (multi-label, PaddleNLP convention) sigmoid + threshold."""
    return decide(probabilities_of(logits, settings.multi_label), settings)


def decode_windows(window_logits: list[np.ndarray], settings: SeqClsSettings) -> SeqClsBatch:
    """One answer per text from its windows' [W, C] logits, by `settings.aggregate`."""
    if settings.aggregate == "max":
        return decide(np.stack([probabilities_of(w, settings.multi_label).max(axis=0) for w in window_logits]),
                      settings)
    return decode(np.stack([w.astype(np.float32).mean(axis=0) for w in window_logits]), settings)


def decide(probabilities: np.ndarray, settings: SeqClsSettings) -> SeqClsBatch:
    """Argmax, and (multi-label) every class at or over the threshold."""
    label = probabilities.argmax(axis=-1).astype(np.int64)
    confidence = np.take_along_axis(probabilities, label[:, None], axis=-1)[:, 0]
    if settings.multi_label:
        selected = probabilities >= settings.threshold
    else:
        selected = np.zeros_like(probabilities, dtype=bool)
        selected[np.arange(len(label)), label] = True
    return SeqClsBatch(label, confidence.astype(np.float32), probabilities.astype(np.float32), selected)


def flat_decisions(selected: np.ndarray, probabilities: np.ndarray, separator: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label `label` / `confidence` of a request ([B, C] decisions and probabilities): the
    ids over the threshold and their probabilities, text after text, `separator` between
    consecutive texts (one text: just its ids)."""
    ids, chosen_probabilities = [], []
    for row, decisions in enumerate(selected):
        if row:
            ids.append(separator)
            chosen_probabilities.append(float(separator))
        chosen = np.flatnonzero(decisions)
        ids.extend(chosen.tolist())
        chosen_probabilities.extend(probabilities[row, chosen].tolist())
    return np.array(ids, dtype=np.int64), np.array(chosen_probabilities, dtype=np.float32)
