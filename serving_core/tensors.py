"""The named tensors a program reads and writes."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: numpy dtype name and shape with -1 for dynamic axes (batch first)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
