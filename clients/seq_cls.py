"""Sequence classification client for a generated Triton ensemble.

Library::

    from clients.seq_cls import SeqClsClient
    client = SeqClsClient("localhost:8001", "intent")
    for result in client.classify(["打开空调"]):
        print(result.label_name, result.confidence)

CLI (one JSON object per text)::

    python -m clients.seq_cls --url localhost:8001 --model intent "打开空调" "播放周杰伦的花心"
    python -m clients.seq_cls --file texts.txt --top-k 3
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from serving_core import answers, interface

from serving_core.errors import ClientError

from .triton import TaskClient, run_cli


@dataclass
class SeqClsResult:
    text: str
    label: int
    label_name: str
    confidence: float
    truncated: bool
    text_pair: str | None = None
    labels: list[str] | None = None  # multi-label: every label over the threshold
    top_k: list[dict] = field(default_factory=list)  # [{"label": ..., "probability": ...}]
    windows: int | None = None  # a model built with --long-text windows: the windows of the text it read

    def to_json(self) -> dict:
        return answers.seq_cls(self.text, self.label, self.label_name, self.confidence, self.truncated,
                               self.text_pair, self.labels, self.top_k, self.windows)


class SeqClsClient(TaskClient):
    """Classifies texts with a seq_cls ensemble; names and sizes come from the server."""

    TASK = interface.Task.SEQ_CLS.value

    def __init__(self, url: str, model: str | None = None, timeout_s: float | None = 60.0):
        super().__init__(url, model, timeout_s)
        self.labels: list[str] = self.info.parameter(interface.PARAM_LABELS, [])
        self.text_pair: bool = self.info.parameter(interface.PARAM_TEXT_PAIR, False)
        self.multi_label: bool = self.info.parameter(interface.PARAM_MULTI_LABEL, False)
        self.windowed: bool = self.info.parameters.get(interface.PARAM_LONG_TEXT) == "windows"

    def probabilities(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """[len(texts), num_labels] probabilities (softmax, or sigmoid for multi-label)."""
        return self._run(texts, pairs, [interface.PROBABILITIES])[interface.PROBABILITIES]

    def classify(self, texts: list[str], pairs: list[str] | None = None, top_k: int = 0) -> list[SeqClsResult]:
        """One result per text. Multi-label: `label` / `confidence` of the most probable class,
        `labels` every class over the threshold (the server's flat `label` is left unread)."""
        outputs = [interface.LABEL_NAME, interface.TRUNCATED]
        if top_k > 0 or self.multi_label:
            outputs += [interface.PROBABILITIES, interface.SELECTED]
        if not self.multi_label:
            outputs += [interface.LABEL, interface.CONFIDENCE]
        if self.windowed:
            outputs.append(interface.WINDOWS)
        columns = self._run(texts, pairs, outputs)
        results = []
        for row, text in enumerate(texts):
            if self.multi_label:
                label = int(np.argmax(columns[interface.PROBABILITIES][row]))
                confidence = float(columns[interface.PROBABILITIES][row, label])
            else:
                label, confidence = int(columns[interface.LABEL][row]), float(columns[interface.CONFIDENCE][row])
            result = SeqClsResult(
                text=text, text_pair=pairs[row] if pairs is not None else None, label=label,
                label_name=columns[interface.LABEL_NAME][row].decode("utf-8"), confidence=confidence,
                truncated=bool(columns[interface.TRUNCATED][row]),
                windows=int(columns[interface.WINDOWS][row]) if self.windowed else None)
            if interface.PROBABILITIES in columns:
                result.top_k = answers.top_k(columns[interface.PROBABILITIES][row], self.labels, top_k)
                if self.multi_label:
                    result.labels = [self.labels[i] for i in np.flatnonzero(columns[interface.SELECTED][row])]
            results.append(result)
        return results

    def _run(self, texts: list[str], pairs: list[str] | None, outputs: list[str]) -> dict[str, np.ndarray]:
        if self.text_pair != (pairs is not None):
            raise ClientError(f"model {self.model!r} "
                              + ("needs text pairs" if self.text_pair else "takes single texts"))
        columns = {interface.TEXT: texts}
        if pairs is not None:
            columns[interface.TEXT_PAIR] = pairs
        return self.run(columns, outputs)


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, __doc__, SeqClsClient,
                   lambda client, texts, pairs, args: [r.to_json() for r in client.classify(texts, pairs, args.top_k)],
                   top_k=True)


if __name__ == "__main__":
    sys.exit(main())
