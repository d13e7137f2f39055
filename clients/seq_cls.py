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

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from serving_core import interface

from .text_input import read_texts
from .triton import ClientError, bytes_input, chunks, connect, ensemble_info, find_model, infer


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

    def to_json(self) -> dict:
        data = asdict(self)
        return {k: v for k, v in data.items() if v is not None and v != []}


class SeqClsClient:
    """Classifies texts with a seq_cls ensemble; names and sizes come from the server."""

    def __init__(self, url: str, model: str | None = None, timeout_s: float | None = 60.0):
        self._client = connect(url)
        self.model = model or find_model(self._client, interface.Task.SEQ_CLS.value)
        self.info = ensemble_info(self._client, self.model)
        if self.info.task != interface.Task.SEQ_CLS.value:
            raise ClientError(f"model {self.model!r} serves task {self.info.task or 'unknown'!r}, not seq_cls")
        self.labels: list[str] = self.info.parameter(interface.PARAM_LABELS, [])
        self.text_pair: bool = self.info.parameter(interface.PARAM_TEXT_PAIR, False)
        self.multi_label: bool = self.info.parameter(interface.PARAM_MULTI_LABEL, False)
        self.timeout_s = timeout_s

    def probabilities(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """[len(texts), num_labels] probabilities (softmax, or sigmoid for multi-label)."""
        return self._run(texts, pairs, [interface.PROBABILITIES])[interface.PROBABILITIES]

    def classify(self, texts: list[str], pairs: list[str] | None = None, top_k: int = 0) -> list[SeqClsResult]:
        outputs = [interface.LABEL, interface.LABEL_NAME, interface.CONFIDENCE, interface.TRUNCATED]
        if top_k > 0 or self.multi_label:
            outputs += [interface.PROBABILITIES, interface.SELECTED]
        columns = self._run(texts, pairs, outputs)
        results = []
        for row, text in enumerate(texts):
            result = SeqClsResult(
                text=text, text_pair=pairs[row] if pairs is not None else None,
                label=int(columns[interface.LABEL][row, 0]),
                label_name=columns[interface.LABEL_NAME][row, 0].decode("utf-8"),
                confidence=float(columns[interface.CONFIDENCE][row, 0]),
                truncated=bool(columns[interface.TRUNCATED][row, 0]))
            if interface.PROBABILITIES in columns:
                probabilities = columns[interface.PROBABILITIES][row]
                order = np.argsort(-probabilities)[:top_k]
                result.top_k = [{"label": self.labels[i], "probability": round(float(probabilities[i]), 6)}
                                for i in order]
                if self.multi_label:
                    result.labels = [self.labels[i] for i in np.flatnonzero(columns[interface.SELECTED][row])]
            results.append(result)
        return results

    def _run(self, texts: list[str], pairs: list[str] | None, outputs: list[str]) -> dict[str, np.ndarray]:
        if self.text_pair != (pairs is not None):
            raise ClientError(f"model {self.model!r} " + ("needs text pairs" if self.text_pair else "takes single texts"))
        if not texts:
            return {name: np.empty((0, 1)) for name in outputs}
        parts = []
        for rows in chunks(len(texts), self.info.max_batch_size):
            inputs = [bytes_input(interface.TEXT, texts[rows])]
            if pairs is not None:
                inputs.append(bytes_input(interface.TEXT_PAIR, pairs[rows]))
            parts.append(infer(self._client, self.model, inputs, outputs, self.timeout_s))
        return {name: np.concatenate([p[name] for p in parts]) for name in outputs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.seq_cls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help="texts to classify (pairs: 'text<TAB>pair')")
    parser.add_argument("--url", default="localhost:8001", help="Triton gRPC address (default: %(default)s)")
    parser.add_argument("--model", help="ensemble name (default: the server's only seq_cls model)")
    parser.add_argument("--file", help="read texts from this file, one a line ('-' for stdin)")
    parser.add_argument("--top-k", type=int, default=0, help="also print the K most probable labels")
    args = parser.parse_args(argv)
    try:
        client = SeqClsClient(args.url, args.model)
        texts, pairs = read_texts(args.texts, args.file, client.text_pair)
        if not texts:
            parser.error("no texts: give them as arguments or with --file")
        for result in client.classify(texts, pairs, args.top_k):
            print(json.dumps(result.to_json(), ensure_ascii=False))
    except (ClientError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
