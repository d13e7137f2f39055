"""Sliding windows over long text (token_cls) and long contexts (qa), PaddleNLP-compatible.

`stride` is the step between the starts of neighbouring windows, as PaddleNLP's `stride`
/ `doc_stride` with `return_overflowing_tokens` (its tokenizer does `offset += stride`):
windows overlap by `size - stride` tokens, and windows here equal PaddleNLP's.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from .errors import InvalidRequest
from .tokenization import char_limit, clip_texts


class TokenizerMode(str, enum.Enum):
    TRUNCATE = "truncate"  # [B, L]: one window, longer text cut (seq_cls)
    WINDOWS = "windows"  # [B, W, L]: every token in some window (token_cls); max_windows=1 cuts (intent_slot)
    QA = "qa"  # [B, W, L]: [CLS] question [SEP] context window [SEP]


@dataclass(frozen=True)
class WindowSettings:
    """How the tokenizer step lays text out for the model; stored beside TokenizerSettings."""

    mode: str = TokenizerMode.TRUNCATE.value
    stride: int = 32  # step between window starts
    max_windows: int = 0  # 0: as many as the text needs (and no character cut before tokenizing)
    max_question_len: int = 64
    pad_to_max: bool = False  # truncate mode: every row max_seq_len wide (native backends batch equal shapes)


def window_starts(num_tokens: int, size: int, stride: int) -> list[int]:
    """Start of each window of at most `size` tokens, `stride` tokens apart (0: no overlap)."""
    if size <= 0:
        raise ValueError(f"window size {size} must be positive")
    step = min(stride, size) if stride > 0 else size
    starts = [0]
    while starts[-1] + size < num_tokens:
        starts.append(starts[-1] + step)
    return starts


@dataclass
class WindowedBatch:
    """[B, W, L] windows. `token_index[b, w, p]` is the text token at position p (-1 for
    special tokens, question tokens and padding); `offsets[b, t]` are token t's
    (start, end) character offsets in the text, end exclusive (-1 past the last token)."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    token_index: np.ndarray
    offsets: np.ndarray
    num_tokens: np.ndarray
    windows: np.ndarray  # windows per text
    lengths: np.ndarray  # longest window of each text, in tokens
    truncated: np.ndarray  # text tokens left out (max_windows reached) or question cut


def encode_windows(tokenizer, texts: list[str], stride: int, questions: list[str] | None = None,
                   max_question_len: int = 64, max_windows: int = 0) -> WindowedBatch:
    """Tokenize and cut each text (the context, for qa) into windows of the tokenizer's max_seq_len.

    `tokenizer` is a `serving_core.tokenization.ErnieTokenizer`. With `questions`, every window is
    `[CLS] question [SEP] context-window [SEP]` (token types 0, then 1) as PaddleNLP builds QA features.
    With `max_windows`, a text is first cut to `char_limit(max_windows * max_seq_len)` characters (a
    question to `char_limit(max_seq_len)`), and a cut text is flagged truncated.
    """
    max_len = tokenizer.settings.max_seq_len
    texts, clipped = clip_texts(texts, char_limit(max_windows * max_len) if max_windows else 0)
    if questions is not None:
        questions, clipped_questions = clip_texts(questions, char_limit(max_len))
        clipped = clipped | clipped_questions
    encodings = tokenizer.pieces(texts)
    # Encoding.ids / .offsets build a new Python list on every access: read each once.
    doc_ids = [e.ids for e in encodings]
    asked = [e.ids for e in tokenizer.pieces(questions)] if questions is not None else None
    rows = []  # per text: list of (ids, types, index)
    truncated_rows = []
    for row, ids_of_doc in enumerate(doc_ids):
        prefix_ids, prefix_types = [tokenizer.cls_id], [0]
        if asked is not None:
            question = asked[row][:max_question_len]
            truncated_rows.append(len(asked[row]) > max_question_len or bool(clipped[row]))
            prefix_ids = prefix_ids + question + [tokenizer.sep_id]
            prefix_types = [0] * len(prefix_ids)
        else:
            truncated_rows.append(bool(clipped[row]))
        size = max_len - len(prefix_ids) - 1
        if size < 1:
            raise InvalidRequest(f"question {row} leaves no room for context in max_seq_len {max_len}")
        second = 1 if asked is not None else 0
        windows = []
        starts = window_starts(len(ids_of_doc), size, stride)
        if max_windows and len(starts) > max_windows:
            starts = starts[:max_windows]
            truncated_rows[-1] = True
        for start in starts:
            end = min(start + size, len(ids_of_doc))
            ids = prefix_ids + ids_of_doc[start:end] + [tokenizer.sep_id]
            types = prefix_types + [second] * (end - start + 1)
            index = [-1] * len(prefix_ids) + list(range(start, end)) + [-1]
            windows.append((ids, types, index))
        rows.append(windows)
    batch, width = len(rows), max(len(w) for w in rows) if rows else 0
    length = max((len(ids) for w in rows for ids, _, _ in w), default=0)
    longest = max((len(d) for d in doc_ids), default=0)
    input_ids = np.full((batch, width, length), tokenizer.pad_id, dtype=np.int64)
    token_type_ids = np.zeros((batch, width, length), dtype=np.int64)
    token_index = np.full((batch, width, length), -1, dtype=np.int32)
    offsets = np.full((batch, max(longest, 1), 2), -1, dtype=np.int32)
    for b, windows in enumerate(rows):
        for w, (ids, types, index) in enumerate(windows):
            input_ids[b, w, : len(ids)] = ids
            token_type_ids[b, w, : len(ids)] = types
            token_index[b, w, : len(ids)] = index
        doc_offsets = encodings[b].offsets
        if doc_offsets:
            offsets[b, : len(doc_offsets)] = doc_offsets
    return WindowedBatch(input_ids, token_type_ids, token_index, offsets,
                         np.array([len(d) for d in doc_ids], dtype=np.int32),
                         np.array([len(w) for w in rows], dtype=np.int32),
                         np.array([max(len(ids) for ids, _, _ in w) for w in rows], dtype=np.int32),
                         np.array(truncated_rows, dtype=bool))


def merge_windows(token_index: np.ndarray, values: np.ndarray, num_tokens: int) -> np.ndarray:
    """Per-token values [num_tokens, ...] from per-window values [W, L, ...]: each token is
    taken from the window where it lies farthest from a window edge (most context)."""
    merged = np.zeros((num_tokens, *values.shape[2:]), dtype=values.dtype)
    best = np.full(num_tokens, -1, dtype=np.int64)
    for w in range(token_index.shape[0]):
        positions = np.flatnonzero(token_index[w] >= 0)
        if positions.size == 0:
            continue
        tokens = token_index[w, positions]
        centrality = np.minimum(positions - positions[0], positions[-1] - positions)
        better = centrality > best[tokens]
        merged[tokens[better]] = values[w, positions[better]]
        best[tokens[better]] = centrality[better]
    return merged
