"""The answer JSON the Paddle Serving service returns: one object per input.

The Triton clients (clients/) build objects of the same shape from the ensemble's typed
tensors with their own code; tests/test_paddle_serving.py compares the two servers' answers
on every task. (Making the clients call these functions too is open work.)
"""
from __future__ import annotations

import numpy as np

from .qa import Answer
from .token_cls import Entity


def seq_cls(text: str, label: int, labels: list[str], confidence: float, truncated: bool,
            probabilities: np.ndarray | None = None, top_k: int = 0, pair: str | None = None,
            selected: np.ndarray | None = None) -> dict:
    answer = {"text": text}
    if pair is not None:
        answer["text_pair"] = pair
    answer.update({"label": int(label), "label_name": labels[label], "confidence": float(confidence),
                   "truncated": bool(truncated)})
    if selected is not None:
        answer["labels"] = [labels[i] for i in np.flatnonzero(selected)]
    if probabilities is not None and top_k > 0:
        order = np.argsort(-probabilities)[:top_k]
        answer["top_k"] = [{"label": labels[i], "probability": round(float(probabilities[i]), 6)} for i in order]
    return answer


def token_cls(text: str, entities: list[Entity], truncated: bool) -> dict:
    return {"text": text, "entities": [e.to_json() for e in entities], "truncated": bool(truncated)}


def qa(question: str, answer: Answer) -> dict:
    return {"question": question, "answer": answer.text, "start": int(answer.start), "end": int(answer.end),
            "score": round(float(answer.score), 6), "probability": round(float(answer.probability), 6)}


def intent_slot(text: str, intent: str, confidence: float, slots: list[Entity], truncated: bool) -> dict:
    return {"text": text, "intent": intent, "confidence": round(float(confidence), 6),
            "slots": [{"slot": s.label, "entity": s.text, "start": s.start, "end": s.end, "score": round(s.score, 6)}
                      for s in slots], "truncated": bool(truncated)}
