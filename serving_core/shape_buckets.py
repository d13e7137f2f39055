"""Batch shapes the engine is given, padded up to a few buckets and warmed when the step loads
(builder --shape-buckets; off by default).

Paddle Inference's oneDNN kernels prepare themselves for every new input shape and keep memory
for it: on ERNIE 3.0 Medium a process grew from 632 MB to 3142 MB over 150 batch shapes
(`set_mkldnn_cache_capacity` did not bound it), and the first run of a shape was the slowest.
Served traffic makes a new shape of almost every batch (1 to 64 requests joined, any length up
to max_seq_len), so such a server grows with the variety of what clients send. Padding each
batch up to a bucket (lengths to a multiple of `length_step`, rows to the next of 1, 2, 3, 4, 6,
8, 12, 16, ...) bounds that to the buckets within the token budget (95 at 16 tokens a step and
4096 tokens), the small ones run once at load. The padding is computed, though: on Medium it
cost 10-21% of the texts/s (`python -m benchmarks.studies.shape_buckets`, docs/benchmarks.md), which is why it is
not the default. Padding rows repeat the batch's first row and padded positions hold each
input's pad value, which the program masks, so every real row's answer is what it is without
padding (tests/test_shape_buckets.py checks it against the unpadded engine).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .runtime import run_in_slices
from .tokenization import pad_to_width

WARM_UP_TOKENS = 512  # a step with buckets warms every bucket of at most this many tokens when it loads


def bucket_rows(rows: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k and 3 x 2^k) that is >= rows: under a
    third of a padded batch is padding."""
    if rows <= 2:
        return max(rows, 1)
    power = 1 << (rows - 1).bit_length()  # the power of two >= rows
    return power * 3 // 4 if power * 3 // 4 >= rows else power


def bucket_rows_within(rows: int) -> int:
    """The largest of 1, 2, 3, 4, 6, 8, 12, ... that is <= rows (1 for 0)."""
    if rows <= 2:
        return max(rows, 1)
    power = 1 << (rows.bit_length() - 1)  # the power of two <= rows
    return power * 3 // 2 if power * 3 // 2 <= rows else power


@dataclass(frozen=True)
class ShapeBuckets:
    """Lengths padded to a multiple of `length_step` (never past `max_length`, the longest a
    request may be: the program's position table bounds it), rows to `bucket_rows`. A batch
    whose padded bucket would pass `max_tokens` (the model step's token budget; 0: none) runs
    in calls of the largest bucket within it."""

    length_step: int
    max_length: int
    max_tokens: int = 0

    def __post_init__(self):
        if self.length_step < 1:
            raise ValueError(f"length_step must be >= 1, got {self.length_step}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {self.max_tokens}")

    def width(self, width: int) -> int:
        """The length a batch of `width` tokens is padded to."""
        return max(width, min(-(-width // self.length_step) * self.length_step, self.max_length))

    def rows_per_call(self, width: int) -> int:
        """The most rows one engine call takes at padded length `width`: a bucket (0: no bound)."""
        return bucket_rows_within(self.max_tokens // width) if self.max_tokens else 0

    def shape(self, rows: int, width: int) -> tuple[int, int]:
        """The bucket a [rows, width] batch is padded to (before any cut to `rows_per_call`)."""
        return bucket_rows(rows), self.width(width)

    def shapes(self, max_tokens: int) -> list[tuple[int, int]]:
        """Every bucket of at most `max_tokens` padded tokens, smallest first (what a step warms;
        with the budget, every shape the engine can be given for lengths up to `max_length`)."""
        found = []
        for width in sorted({self.width(w) for w in range(1, self.max_length + 1)}):
            rows = 1
            while rows * width <= max_tokens:
                found.append((rows, width))
                rows = bucket_rows(rows + 1)
        return sorted(found, key=lambda s: (s[0] * s[1], s))


class BucketedRunner:
    """A runner that pads every batch to its bucket, runs it, and cuts the outputs back: rows
    to the batch's own, and the token axis (axis 1 of an output the program declares
    dynamic there) to the batch's own length."""

    def __init__(self, runner, buckets: ShapeBuckets, pad_values: dict[str, int]):
        self.runner = runner
        self.signature = runner.signature
        self.buckets = buckets
        self.pad_values = pad_values
        self._token_axis = {t.name for t in runner.signature.outputs if len(t.shape) >= 2 and t.shape[1] in (-1, None)}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, width = next(iter(feeds.values())).shape
        return run_in_slices(self._run_padded, feeds, self.buckets.rows_per_call(self.buckets.width(width)) or rows)

    def _run_padded(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, width = next(iter(feeds.values())).shape
        padded_rows, padded_width = self.buckets.shape(rows, width)
        if (padded_rows, padded_width) == (rows, width):
            return self.runner.run(feeds)
        outputs = self.runner.run({name: self._pad(name, array, padded_rows, padded_width)
                                   for name, array in feeds.items()})
        cut = {}
        for name, value in outputs.items():
            value = value[:rows]
            if name in self._token_axis and value.ndim >= 2 and value.shape[1] == padded_width:
                value = value[:, :width]
            cut[name] = np.ascontiguousarray(value)
        return cut

    def _pad(self, name: str, array: np.ndarray, rows: int, width: int) -> np.ndarray:
        padded = pad_to_width(array, width, self.pad_values.get(name, 0))
        # padding rows: copies of a real one
        return np.concatenate([padded, np.repeat(padded[:1], rows - len(padded), axis=0)])

    def warm_up(self, max_tokens: int) -> tuple[int, float]:
        """Run every bucket of at most `max_tokens` tokens once, on rows of padding; returns
        (shapes run, seconds taken)."""
        started = time.perf_counter()
        shapes = self.buckets.shapes(max_tokens)
        for rows, width in shapes:
            self.runner.run({t.name: np.full((rows, width), self.pad_values.get(t.name, 0), dtype=t.dtype)
                             for t in self.signature.inputs})
        return len(shapes), time.perf_counter() - started
