"""Texts -> the model's feeds, for every tokenizer mode: the one place this is done.

Used by the Triton tokenizer step, the Paddle Serving op, the build's engine proof, INT8
calibration and the benchmarks' bare engine, so they cannot disagree on what a model input holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tokenization import ErnieTokenizer, feeds_from_ids, pad_to_width, pad_value_for
from .windows import TokenizerMode, WindowedBatch, WindowSettings, encode_windows


@dataclass(frozen=True)
class EncodedTexts:
    """`feeds`: model input name -> [B, L] (truncate mode) or [B, W, L] (window modes), int64.
    `truncated`: [B] text cut. `lengths`: [B] tokens of each text's longest row.
    `windows`: the window bookkeeping (token_index, offsets, window counts) in window modes."""

    feeds: dict[str, np.ndarray]
    truncated: np.ndarray
    lengths: np.ndarray
    windows: WindowedBatch | None = None

    def flat_rows(self, pad_id: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """[rows, L] feeds of the real rows (windows that are all padding dropped), and the mask
        of kept rows over the flattened [B*W] (or [B]) rows."""
        ids = self.feeds["input_ids"]
        flat = {name: array.reshape(-1, array.shape[-1]) for name, array in self.feeds.items()}
        live = (flat["input_ids"] != pad_id).any(axis=1) if ids.size else np.zeros(0, dtype=bool)
        return {name: array[live] for name, array in flat.items()}, live


class FeedEncoder:
    """Encodes rows of text columns for a model taking `feed_names` (see KNOWN_MODEL_INPUTS).

    Columns: [texts] or [texts, pairs] (truncate mode), [texts] (windows), [questions, contexts] (qa).
    """

    def __init__(self, tokenizer: ErnieTokenizer, window: WindowSettings, feed_names: list[str]):
        self.tokenizer = tokenizer
        self.window = window
        self.mode = TokenizerMode(window.mode)
        self.feed_names = list(feed_names)

    def encode(self, columns: list[list[str]]) -> EncodedTexts:
        pad_id = self.tokenizer.pad_id
        if self.mode is TokenizerMode.TRUNCATE:
            batch = self.tokenizer.encode(*columns)
            feeds = feeds_from_ids(self.feed_names, batch.input_ids, batch.token_type_ids, pad_id)
            return EncodedTexts(feeds, batch.truncated, batch.lengths)
        texts, questions = (columns[1], columns[0]) if self.mode is TokenizerMode.QA else (columns[0], None)
        batch = encode_windows(self.tokenizer, texts, self.window.stride, questions, self.window.max_question_len,
                               self.window.max_windows)
        feeds = feeds_from_ids(self.feed_names, batch.input_ids, batch.token_type_ids, pad_id)
        return EncodedTexts(feeds, batch.truncated, batch.lengths, batch)

    def full_width(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`feeds` padded on their last axis to max_seq_len (each input with its own pad value):
        native backends and Paddle Serving's auto-batching join requests only of equal shapes."""
        width = self.tokenizer.settings.max_seq_len
        return {name: pad_to_width(array, width, pad_value_for(name, self.tokenizer.pad_id))
                for name, array in feeds.items()}
