"""`builder verify`: the served answers against the source model in PaddleNLP, for every task."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving_core.embedding import cosines
from serving_core.interface import Task
from serving_core.spec import EnsembleSpec

from builder.source.reference import (reference_answers, reference_embeddings, reference_entities,
                                      reference_intent_slot, reference_logits, reference_probabilities,
                                      reference_window_probabilities)
from builder.triton.repository import read_build
from builder.source.detect import ModelSource, inspect_source

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    model: str
    task: str
    texts: int
    agreement: float  # share of texts whose answer (label, entities, span, intent+slots) is identical, or
    # (embedding) whose vector is within the tolerance's cosine distance of the source's
    max_diff: float  # largest difference of a probability or score; embedding: the largest cosine distance
    tolerance: float
    mismatches: list[dict] = field(default_factory=list)
    min_agreement: float = 1.0  # INT8 / bf16 builds state a lower bar

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement and self.max_diff <= self.tolerance

    def to_json(self) -> dict:
        return {"model": self.model, "task": self.task, "texts": self.texts, "agreement": round(self.agreement, 6),
                "min_agreement": self.min_agreement, "max_diff": float(f"{self.max_diff:.3g}"),
                "tolerance": self.tolerance, "passed": self.passed,
                "mismatches": self.mismatches[:20]}


def _verify_seq_cls(ctx, rows):
    from clients.seq_cls import SeqClsClient

    texts = [r[0] for r in rows]
    pairs = [r[1] for r in rows] if ctx.spec.text_pair else None
    settings, window = ctx.spec.postprocess, ctx.spec.window
    windows = None
    if settings.aggregate:  # --long-text windows
        expected, windows = reference_window_probabilities(ctx.source, texts, ctx.max_seq_len, window.stride,
                                                           window.max_windows, settings.multi_label,
                                                           settings.aggregate)
    else:
        expected = reference_probabilities(reference_logits(ctx.source, texts, pairs, ctx.max_seq_len),
                                           settings.multi_label)
    client = SeqClsClient(ctx.url, ctx.model)
    served = client.probabilities(texts, pairs)
    results = client.classify(texts, pairs)
    served_labels = np.array([r.label for r in results])
    if settings.multi_label:
        same = same_decisions(served, expected, settings.threshold, ctx.tolerance)
    else:
        same = same_labels(served_labels, expected, ctx.tolerance)
    if windows is not None:  # every window the source read was read
        same &= np.array([r.windows == count for r, count in zip(results, windows)])
    mismatches = [{"text": texts[i], "served": settings.labels[served_labels[i]],
                   "source": settings.labels[int(expected[i].argmax())]} for i in np.flatnonzero(~same)]
    return same.mean(), float(np.abs(served - expected).max()), mismatches


def same_labels(served_labels: np.ndarray, expected: np.ndarray, tolerance: float) -> np.ndarray:
    """Per text: the served label is the source's argmax, or ties with it within `tolerance`
    (two classes that close are equally right answers; the probability check covers the gap)."""
    best = expected.max(axis=1)
    chosen = expected[np.arange(len(expected)), served_labels]
    return (served_labels == expected.argmax(axis=1)) | (best - chosen <= tolerance)


def same_decisions(served: np.ndarray, expected: np.ndarray, threshold: float, tolerance: float) -> np.ndarray:
    """Per text, multi-label: every decision agrees, except where the source's probability is
    within `tolerance` of the threshold (either side is right there)."""
    agree = (served >= threshold) == (expected >= threshold)
    return (agree | (np.abs(expected - threshold) <= tolerance)).all(axis=1)


def _exact_offsets(source: ModelSource):
    """text -> (token ids, character offsets) of the serving tokenizer (Rust offset mapping)."""
    from serving_core.tokenization import ErnieTokenizer, settings_from_tokenizer_config

    tokenizer = ErnieTokenizer.from_files(source.vocab_file, settings_from_tokenizer_config(source.tokenizer_dir, 8))

    def char_offsets(text: str):
        encoding = tokenizer.pieces([text])[0]
        return encoding.ids, np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    return char_offsets


def _spans_agree(served: list[dict], expected, label_key: str, text_key: str,
                 tolerance: float) -> tuple[bool, float]:
    """(the served spans are the source's, or differ only where a source token sits on a tie;
    the largest score difference of the spans both have)."""
    want = {(e.label, e.text, e.start, e.end): e.score for e in expected.entities}
    got = {(s[label_key], s[text_key], s["start"], s["end"]): s["score"] for s in served}
    diff = max((abs(got[k] - want[k]) for k in got.keys() & want.keys()), default=0.0)
    differing = got.keys() ^ want.keys()
    return all(expected.tied_within(start, end, tolerance) for _, _, start, end in differing), diff


def _verify_token_cls(ctx, rows):
    from clients.token_cls import TokenClsClient

    texts = [r[0] for r in rows]
    expected = reference_entities(ctx.source, texts, ctx.max_seq_len, ctx.spec.window.stride, ctx.spec.postprocess,
                                  _exact_offsets(ctx.source))
    served = TokenClsClient(ctx.url, ctx.model).entities(texts)
    same, worst, mismatches = [], 0.0, []
    for text, got, want in zip(texts, served, expected):
        equal, diff = _spans_agree(got["entities"], want, "label", "text", ctx.tolerance)
        same.append(equal)
        worst = max(worst, diff)
        if not equal:
            mismatches.append({"text": text, "served": got["entities"],
                               "source": [e.to_json() for e in want.entities]})
    return float(np.mean(same)), worst, mismatches


def _verify_intent_slot(ctx, rows):
    from clients.intent_slot import IntentSlotClient

    texts = [r[0] for r in rows]
    settings = ctx.spec.postprocess
    expected = reference_intent_slot(ctx.source, texts, ctx.max_seq_len, settings.slots, settings.intents,
                                     _exact_offsets(ctx.source))
    served = IntentSlotClient(ctx.url, ctx.model).parse(texts)
    same, worst, mismatches = [], 0.0, []
    for text, got, want in zip(texts, served, expected):
        equal, diff = _spans_agree(got["slots"], want["slots"], "slot", "entity", ctx.tolerance)
        equal = equal and (got["intent"] == want["intent"] or want["intent_margin"] <= ctx.tolerance)
        worst = max(worst, diff, abs(got["confidence"] - want["confidence"]))
        same.append(equal)
        if not equal:
            mismatches.append({"text": text, "served": got, "source": {
                "intent": want["intent"], "confidence": want["confidence"],
                "slots": [e.to_json() for e in want["slots"].entities]}})
    return float(np.mean(same)), worst, mismatches


def _verify_qa(ctx, rows):
    from clients.qa import QAClient

    questions, contexts = [r[0] for r in rows], [r[1] for r in rows]
    expected = reference_answers(ctx.source, questions, contexts, ctx.max_seq_len, ctx.spec.window.stride,
                                 ctx.spec.postprocess)
    served = QAClient(ctx.url, ctx.model).answer(questions, contexts)
    same = [got["answer"] == want for got, want in zip(served, expected)]
    mismatches = [{"question": q, "served": got["answer"], "source": want}
                  for q, got, want, ok in zip(questions, served, expected, same) if not ok]
    return float(np.mean(same)), 0.0, mismatches


def _verify_embedding(ctx, rows):
    """A text agrees when its served vector's cosine distance to the source's (1 - cosine) is at
    most the tolerance: the default 1e-4 is cosine 0.9999 (FP32); INT8 builds pass 1e-2."""
    from clients.embedding import EmbeddingClient

    texts = [r[0] for r in rows]
    settings, window = ctx.spec.postprocess, ctx.spec.window
    expected, windows = reference_embeddings(ctx.source, texts, ctx.max_seq_len, settings, window.stride,
                                             window.max_windows)
    results = EmbeddingClient(ctx.url, ctx.model).encode(texts)
    distance = 1.0 - cosines(np.array([r["embedding"] for r in results], dtype=np.float32), expected)
    same = distance <= ctx.tolerance
    if settings.aggregate:  # every window the source read was read
        same &= np.array([r["windows"] == count for r, count in zip(results, windows)])
    mismatches = [{"text": texts[i], "cosine": round(1.0 - float(distance[i]), 6),
                   "served_windows": results[i].get("windows"), "source_windows": windows[i]}
                  for i in np.flatnonzero(~same)]
    return float(same.mean()), float(distance.max()), mismatches


_VERIFIERS = {Task.SEQ_CLS: _verify_seq_cls, Task.TOKEN_CLS: _verify_token_cls, Task.QA: _verify_qa,
              Task.INTENT_SLOT: _verify_intent_slot, Task.EMBEDDING: _verify_embedding}


@dataclass(frozen=True)
class _Context:
    model: str
    url: str
    spec: EnsembleSpec
    source: ModelSource
    tolerance: float

    @property
    def max_seq_len(self) -> int:
        return self.spec.tokenizer.max_seq_len


def recorded_source(record: dict) -> ModelSource:
    """The source model as the build read it: its directory, tokenizer, labels and program."""
    inputs = record.get("inputs", {})

    def path(key: str) -> Path | None:
        return Path(inputs[key]) if inputs.get(key) else None

    return inspect_source(Path(record["source"]), path("tokenizer_dir"), path("labels_file"), path("slot_labels_file"),
                          inputs.get("program_file"))


def input_columns(spec: EnsembleSpec) -> int:
    """How many tab-separated fields one line of a verify texts file has."""
    return 2 if spec.task == Task.QA or spec.text_pair else 1


def verify(repository: Path, model: str, url: str, rows: list[tuple[str, ...]], source: ModelSource | None = None,
           tolerance: float = 1e-4, min_agreement: float = 1.0, served_model: str | None = None) -> VerifyReport:
    """Compare the running server's answers on `rows` (one tuple of texts each) with the source
    model: `source`, or the model directory, tokenizer, labels and program the build recorded.
    `served_model`: the Triton model asked (default: the ensemble `model`; e.g. `<model>_direct`)."""
    spec, record = read_build(repository, model)
    task = Task(spec.task)
    source = source or recorded_source(record)
    ctx = _Context(served_model or model, url, spec, source, tolerance)
    agreement, diff, mismatches = _VERIFIERS[task](ctx, rows) if rows else (1.0, 0.0, [])
    return VerifyReport(model, task.value, len(rows), float(agreement), float(diff), tolerance, mismatches,
                        min_agreement)



