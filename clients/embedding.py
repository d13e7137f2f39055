"""Sentence embedding client for a generated Triton ensemble (`builder build --task embedding`).

Library (a numpy array, one row per text; L2-normalised unless built with --no-normalize)::

    from clients.embedding import EmbeddingClient
    vectors = EmbeddingClient("localhost:8001", "encoder").embed(["打开空调", "播放周杰伦的花心"])
    similarity = vectors @ vectors.T

CLI (one JSON object per text: text, embedding, truncated; windows for --long-text windows)::

    python -m clients.embedding --url localhost:8001 --model encoder "打开空调" "播放周杰伦的花心"
"""
from __future__ import annotations

import sys

import numpy as np

from serving_core import answers, interface

from .triton import TaskClient, run_cli


class EmbeddingClient(TaskClient):
    """Embeds texts with an embedding ensemble; its length and pooling come from the server."""

    TASK = interface.Task.EMBEDDING.value

    def __init__(self, url: str, model: str | None = None, timeout_s: float | None = 60.0):
        super().__init__(url, model, timeout_s)
        self.dim: int = self.info.parameter(interface.PARAM_DIM, 0)
        self.pooling: str = self.info.parameters.get(interface.PARAM_POOLING, "")
        self.normalize: bool = self.info.parameter(interface.PARAM_NORMALIZE, True)
        self.windowed: bool = self.info.parameters.get(interface.PARAM_LONG_TEXT) == "windows"

    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] float32."""
        return self.run({interface.TEXT: texts}, [interface.EMBEDDING])[interface.EMBEDDING]

    def encode(self, texts: list[str]) -> list[dict]:
        """One answer object per text: text, embedding, truncated (and windows)."""
        outputs = [interface.EMBEDDING, interface.TRUNCATED] + ([interface.WINDOWS] if self.windowed else [])
        columns = self.run({interface.TEXT: texts}, outputs)
        return [answers.embedding(text, columns[interface.EMBEDDING][row], columns[interface.TRUNCATED][row],
                                  int(columns[interface.WINDOWS][row]) if self.windowed else None)
                for row, text in enumerate(texts)]


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, __doc__, EmbeddingClient, lambda client, texts, pairs, args: client.encode(texts))


if __name__ == "__main__":
    sys.exit(main())
