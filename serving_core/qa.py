"""Extractive QA decoding: start/end logits over windows -> the best answer span.

Follows PaddleNLP's `compute_prediction`: per window the top `n_best` start and end
positions, spans inside the context, start <= end, at most `max_answer_len` tokens, score =
start logit + end logit; the best over all windows wins. Probability = softmax over the
kept candidates' scores, as PaddleNLP reports it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QASettings:
    max_answer_len: int = 30
    n_best: int = 20
    no_answer_threshold: float | None = None  # answer "" when the best probability is below


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the context, inclusive
    end: int  # exclusive
    score: float
    probability: float


NO_ANSWER = Answer("", -1, -1, 0.0, 0.0)


def best_answer(context: str, start_logits: np.ndarray, end_logits: np.ndarray, token_index: np.ndarray,
                offsets: np.ndarray, settings: QASettings) -> Answer:
    """start/end logits and token_index are [W, L] for one question; offsets [T, 2]."""
    candidates = []  # (score, first token, last token)
    for w in range(token_index.shape[0]):
        context_positions = np.flatnonzero(token_index[w] >= 0)
        if context_positions.size == 0:
            continue
        # Like PaddleNLP: the top n over the whole window ([CLS] question [SEP] context [SEP],
        # without padding), then positions outside the context are dropped.
        length = context_positions[-1] + 2
        valid = token_index[w, :length] >= 0
        starts = np.argsort(start_logits[w, :length])[-1: -settings.n_best - 1: -1]
        ends = np.argsort(end_logits[w, :length])[-1: -settings.n_best - 1: -1]
        for s in starts:
            if not valid[s]:
                continue
            for e in ends:
                if not valid[e] or e < s or e - s + 1 > settings.max_answer_len:
                    continue
                candidates.append((float(start_logits[w, s] + end_logits[w, e]),
                                   int(token_index[w, s]), int(token_index[w, e])))
    if not candidates:
        return NO_ANSWER
    candidates.sort(key=lambda c: c[0], reverse=True)
    candidates = candidates[: settings.n_best]
    scores = np.array([c[0] for c in candidates])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    score, first, last = candidates[0]
    if settings.no_answer_threshold is not None and probabilities[0] < settings.no_answer_threshold:
        return NO_ANSWER
    start, end = int(offsets[first][0]), int(offsets[last][1])
    return Answer(context[start:end], start, end, score, float(probabilities[0]))
