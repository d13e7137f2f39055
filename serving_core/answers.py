"""The answer JSON of every task: one object per input, the same from every server.

The Paddle Serving service and the Triton clients (clients/) both build their answers here.
"""
from __future__ import annotations

import numpy as np

from .qa import Answer
from .token_cls import Entity


def top_k(probabilities: np.ndarray, labels: list[str] | tuple[str, ...], k: int) -> list[dict]:
    """The k most probable labels, most probable first."""
    order = np.argsort(-probabilities)[:k] if k > 0 else []
    return [{"label": labels[i], "probability": round(float(probabilities[i]), 6)} for i in order]


def seq_cls(text: str, label: int, label_name: str, confidence: float, truncated: bool, pair: str | None = None,
            selected: list[str] | None = None, best: list[dict] | None = None, windows: int | None = None) -> dict:
    """`selected`: multi-label, every label over the threshold; `best`: the `top_k` list;
    `windows`: built with --long-text windows, how many windows of the text were read."""
    answer = {"text": text}
    if pair is not None:
        answer["text_pair"] = pair
    answer.update({"label": int(label), "label_name": label_name, "confidence": float(confidence),
                   "truncated": bool(truncated)})
    if windows is not None:
        answer["windows"] = int(windows)
    if selected is not None:
        answer["labels"] = list(selected)
    if best:
        answer["top_k"] = best
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


def embedding(text: str, vector, truncated: bool, windows: int | None = None) -> dict:
    """`windows`: built with --long-text windows, how many windows of the text were read."""
    answer = {"text": text, "embedding": [float(v) for v in vector], "truncated": bool(truncated)}
    if windows is not None:
        answer["windows"] = int(windows)
    return answer
