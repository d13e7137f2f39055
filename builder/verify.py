"""`builder verify`: the served answers against the source model in PaddleNLP, for every task."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.qa import QASettings
from serving_core.seq_cls import SeqClsSettings, decode
from serving_core.token_cls import TokenClsSettings

from .reference import reference_answers, reference_entities, reference_intent_slot, reference_logits
from .repository import MANIFEST
from .sources import ModelSource, inspect_source

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    model: str
    task: str
    texts: int
    agreement: float  # share of texts whose answer (label, entities, span, intent+slots) is identical
    max_diff: float  # largest difference of a probability or score
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


def read_manifest(repository: Path, model: str) -> dict:
    path = Path(repository) / model / MANIFEST
    if not path.is_file():
        raise UserError(f"no {MANIFEST}: was this ensemble built by `builder build`?", str(path.parent))
    return json.loads(path.read_text(encoding="utf-8"))


def model_parameters(repository: Path, model: str, step: str) -> dict[str, str]:
    """The `parameters` of one generated step's config.pbtxt."""
    from .triton_config import parse

    config = parse((Path(repository) / f"{model}_{step}" / "config.pbtxt").read_text(encoding="utf-8"))
    return {k: v.string_value for k, v in config.parameters.items()}


def _settings(cls, repository: Path, model: str):
    from serving_core.parameters import from_parameters

    return from_parameters(cls, model_parameters(repository, model, "postprocess"))


def _verify_seq_cls(ctx, rows):
    from clients.seq_cls import SeqClsClient

    texts = [r[0] for r in rows]
    pairs = [r[1] for r in rows] if ctx.manifest["text_pair"] else None
    settings = _settings(SeqClsSettings, ctx.repository, ctx.model)
    expected = decode(reference_logits(ctx.source, texts, pairs, ctx.max_seq_len), settings)
    client = SeqClsClient(ctx.url, ctx.model)
    served = client.probabilities(texts, pairs)
    served_labels = np.array([r.label for r in client.classify(texts, pairs)])
    same = served_labels == expected.label
    if settings.multi_label:
        same &= ((served >= settings.threshold) == expected.selected).all(axis=1)
    mismatches = [{"text": texts[i], "served": settings.labels[served_labels[i]],
                   "source": settings.labels[expected.label[i]]} for i in np.flatnonzero(~same)]
    return same.mean(), float(np.abs(served - expected.probabilities).max()), mismatches


def _exact_offsets(source: ModelSource):
    """text -> (token ids, character offsets) of the serving tokenizer (Rust offset mapping)."""
    from serving_core.tokenization import ErnieTokenizer, settings_from_tokenizer_config

    tokenizer = ErnieTokenizer.from_files(source.vocab_file, settings_from_tokenizer_config(source.tokenizer_dir, 8))

    def char_offsets(text: str):
        encoding = tokenizer.pieces([text])[0]
        return encoding.ids, np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    return char_offsets


def _spans_equal(served: list[dict], expected, label_key: str, text_key: str) -> tuple[bool, float]:
    if len(served) != len(expected):
        return False, 0.0
    diff = 0.0
    for s, e in zip(served, expected):
        if (s[label_key], s[text_key], s["start"], s["end"]) != (e.label, e.text, e.start, e.end):
            return False, diff
        diff = max(diff, abs(s["score"] - e.score))
    return True, diff


def _verify_token_cls(ctx, rows):
    from clients.token_cls import TokenClsClient

    texts = [r[0] for r in rows]
    settings = _settings(TokenClsSettings, ctx.repository, ctx.model)
    expected = reference_entities(ctx.source, texts, ctx.max_seq_len, settings, _exact_offsets(ctx.source))
    served = TokenClsClient(ctx.url, ctx.model).entities(texts)
    same, worst, mismatches = [], 0.0, []
    for text, got, want in zip(texts, served, expected):
        equal, diff = _spans_equal(got["entities"], want, "label", "text")
        same.append(equal)
        worst = max(worst, diff)
        if not equal:
            mismatches.append({"text": text, "served": got["entities"], "source": [e.to_json() for e in want]})
    return float(np.mean(same)), worst, mismatches


def _verify_intent_slot(ctx, rows):
    from clients.intent_slot import IntentSlotClient
    from serving_core.intent_slot import IntentSlotSettings

    texts = [r[0] for r in rows]
    settings = _settings(IntentSlotSettings, ctx.repository, ctx.model)
    expected = reference_intent_slot(ctx.source, texts, ctx.max_seq_len,
                                     TokenClsSettings(settings.slots, settings.scheme), settings.intents,
                                     _exact_offsets(ctx.source))
    served = IntentSlotClient(ctx.url, ctx.model).parse(texts)
    same, worst, mismatches = [], 0.0, []
    for text, got, want in zip(texts, served, expected):
        equal, diff = _spans_equal(got["slots"], want["slots"], "slot", "entity")
        equal = equal and got["intent"] == want["intent"]
        worst = max(worst, diff, abs(got["confidence"] - want["confidence"]))
        same.append(equal)
        if not equal:
            mismatches.append({"text": text, "served": got,
                               "source": {**want, "slots": [e.to_json() for e in want["slots"]]}})
    return float(np.mean(same)), worst, mismatches


def _verify_qa(ctx, rows):
    from clients.qa import QAClient

    questions, contexts = [r[0] for r in rows], [r[1] for r in rows]
    settings = _settings(QASettings, ctx.repository, ctx.model)
    expected = reference_answers(ctx.source, questions, contexts, ctx.max_seq_len, settings)
    served = QAClient(ctx.url, ctx.model).answer(questions, contexts)
    same = [got["answer"] == want for got, want in zip(served, expected)]
    mismatches = [{"question": q, "served": got["answer"], "source": want}
                  for q, got, want, ok in zip(questions, served, expected, same) if not ok]
    return float(np.mean(same)), 0.0, mismatches


_VERIFIERS = {Task.SEQ_CLS: _verify_seq_cls, Task.TOKEN_CLS: _verify_token_cls, Task.QA: _verify_qa,
              Task.INTENT_SLOT: _verify_intent_slot}


@dataclass(frozen=True)
class _Context:
    repository: Path
    model: str
    url: str
    manifest: dict
    source: ModelSource
    max_seq_len: int


def input_columns(task: Task, manifest: dict) -> int:
    """How many tab-separated fields one line of a verify texts file has."""
    return 2 if task is Task.QA or manifest.get("text_pair") else 1


def verify(repository: Path, model: str, url: str, rows: list[tuple[str, ...]], model_dir: Path | None = None,
           tolerance: float = 1e-4, min_agreement: float = 1.0) -> VerifyReport:
    """Compare the running server's answers on `rows` (one tuple of texts each) with the source model."""
    manifest = read_manifest(repository, model)
    task = Task(manifest["task"])
    source = inspect_source(Path(model_dir or manifest["source"]))
    ctx = _Context(Path(repository), model, url, manifest, source, manifest["max_seq_len"])
    agreement, diff, mismatches = _VERIFIERS[task](ctx, rows) if rows else (1.0, 0.0, [])
    return VerifyReport(model, task.value, len(rows), float(agreement), float(diff), tolerance, mismatches,
                        min_agreement)



