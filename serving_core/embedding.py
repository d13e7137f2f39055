"""Sentence embeddings: each window's pooled vector -> one vector per text.

The program pools (serving_core.interface.PARAM_POOLING: [CLS], the mean of the real tokens, or
the encoder's pooler); the postprocess averages a text's windows and L2-normalises.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# How a window's tokens make its vector, inside the exported program:
# cls: the last layer's [CLS] vector; mean: the mean of its real (not padding) tokens' vectors;
# pooler: the encoder's pooler, tanh(dense([CLS])) (PaddleNLP's semantic-search models).
POOLINGS = ("cls", "mean", "pooler")
AS_EXPORTED = "program"  # a static export's own [batch, dim] output (e.g. PaddleNLP's semantic-search export)
NORM_EPSILON = 1e-12  # as paddle.nn.functional.normalize and torch's F.normalize


@dataclass(frozen=True)
class EmbeddingSettings:
    """Postprocess options. `pooling` is what the program does (recorded for clients and verify);
    `aggregate` is "mean" when a text is read in windows (--long-text windows), else ""."""

    dim: int
    pooling: str = "cls"
    normalize: bool = True
    aggregate: str = ""

    def __post_init__(self):
        if self.pooling not in (*POOLINGS, AS_EXPORTED):
            raise ValueError(f"pooling {self.pooling!r} is not one of {(*POOLINGS, AS_EXPORTED)}")
        if self.aggregate not in ("", "mean"):
            raise ValueError(f"an embedding's windows are averaged (mean), not {self.aggregate!r}")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (at least NORM_EPSILON)."""
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, NORM_EPSILON)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row by row cosine similarity of two [N, dim] arrays."""
    return (l2_normalize(a) * l2_normalize(b)).sum(axis=1)


def embed(pooled: np.ndarray, settings: EmbeddingSettings) -> np.ndarray:
    """[B, dim] vectors from [B, dim] pooled outputs (one window per text)."""
    pooled = pooled.astype(np.float32, copy=False)
    return l2_normalize(pooled) if settings.normalize else pooled


def embed_windows(window_vectors: list[np.ndarray], settings: EmbeddingSettings) -> np.ndarray:
    """[B, dim] vectors, each the mean of its text's [W, dim] window vectors, then normalised."""
    return embed(np.stack([w.astype(np.float32).mean(axis=0) for w in window_vectors]), settings)
