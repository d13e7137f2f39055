"""`builder verify`: the served answers against the source model in PaddleNLP."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving_core.errors import UserError
from serving_core.seq_cls import SeqClsSettings, decode

from .reference import reference_logits
from .repository import MANIFEST
from .sources import inspect_source

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    model: str
    texts: int
    label_agreement: float
    max_probability_diff: float
    tolerance: float
    mismatches: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.max_probability_diff <= self.tolerance

    def to_json(self) -> dict:
        return {"model": self.model, "texts": self.texts, "label_agreement": round(self.label_agreement, 6),
                "max_probability_diff": float(f"{self.max_probability_diff:.3g}"), "tolerance": self.tolerance,
                "passed": self.passed, "mismatches": self.mismatches[:20]}


def read_manifest(repository: Path, model: str) -> dict:
    path = Path(repository) / model / MANIFEST
    if not path.is_file():
        raise UserError(f"no {MANIFEST}: was this ensemble built by `builder build`?", str(path.parent))
    return json.loads(path.read_text(encoding="utf-8"))


def verify(repository: Path, model: str, url: str, texts: list[str], pairs: list[str] | None = None,
           model_dir: Path | None = None, tolerance: float = 1e-4) -> VerifyReport:
    """Compare labels and probabilities of the running server with the source model."""
    from clients.seq_cls import SeqClsClient

    manifest = read_manifest(repository, model)
    source = inspect_source(Path(model_dir or manifest["source"]))
    settings = SeqClsSettings(tuple(manifest["labels"]), manifest["multi_label"])
    expected = decode(reference_logits(source, texts, pairs, manifest["max_seq_len"]), settings)
    client = SeqClsClient(url, model)
    served = client.probabilities(texts, pairs)
    results = client.classify(texts, pairs)
    served_labels = np.array([r.label for r in results])
    mismatches = [{"text": texts[i], "served": settings.labels[served_labels[i]],
                   "source": settings.labels[expected.label[i]]}
                  for i in np.flatnonzero(served_labels != expected.label)]
    if settings.multi_label:
        served_sets = served >= settings.threshold
        mismatches += [{"text": texts[i], "served": "multi-label set differs", "source": ""}
                       for i in np.flatnonzero((served_sets != expected.selected).any(axis=1))]
    diff = float(np.abs(served - expected.probabilities).max()) if texts else 0.0
    agreement = float((served_labels == expected.label).mean()) if texts else 1.0
    return VerifyReport(model, len(texts), agreement, diff, tolerance, mismatches)
