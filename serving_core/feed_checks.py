"""Checks on model-step requests before they reach the engine.

The model step is callable on the server's public port, not only through the ensemble, so
its inputs are untrusted: Paddle's CPU embedding kernel does not check ids (an id past the
table reads out of bounds and gives NaN, an id near 1e9 crashes the process). Every request
is checked on its own here; a bad one gets its own error and the batch goes on without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidRequest

# The tokenizer writes token type 0 (first text) and 1 (second text); nothing else is valid input.
TOKEN_TYPES = 2


@dataclass(frozen=True)
class FeedLimits:
    """What a valid model-step request looks like.

    `value_limits[name]`: values of that input lie in [0, limit). `max_seq_len`: the longest
    sequence axis (the program's position table bounds it). `sequence_rank`: 1 for [B, L]
    inputs, 2 for [B, W, L] windows. `max_windows`: most windows per text (0: no bound).
    """

    value_limits: dict[str, int] = field(default_factory=dict)
    max_seq_len: int = 0
    sequence_rank: int = 1
    max_windows: int = 0


def feed_limits(input_names: list[str], vocab_size: int, max_seq_len: int, type_vocab_size: int | None = None,
                sequence_rank: int = 1, max_windows: int = 0) -> FeedLimits:
    """The limits of a program's inputs, from its vocabulary, type vocabulary and max_seq_len."""
    types = min(TOKEN_TYPES, type_vocab_size) if type_vocab_size else TOKEN_TYPES
    known = {"input_ids": vocab_size, "token_type_ids": types, "attention_mask": 2, "position_ids": max_seq_len}
    return FeedLimits({name: known[name] for name in input_names if name in known}, max_seq_len, sequence_rank,
                      max_windows)


def check_feeds(feeds: dict[str, np.ndarray | None], limits: FeedLimits) -> None:
    """Raise InvalidRequest naming the first problem of one request's feeds."""
    shape = None
    for name, limit in limits.value_limits.items():
        array = feeds.get(name)
        if array is None:
            raise InvalidRequest(f"input {name!r} is missing")
        if not np.issubdtype(array.dtype, np.integer):
            raise InvalidRequest(f"input {name!r} is {array.dtype}; expected integer ids")
        if array.ndim != 1 + limits.sequence_rank:
            raise InvalidRequest(f"input {name!r} has shape {list(array.shape)}; expected "
                                 f"{1 + limits.sequence_rank} dims")
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise InvalidRequest(f"input {name!r} has shape {list(array.shape)}, the other inputs {list(shape)}")
        if array.shape[-1] > limits.max_seq_len:
            raise InvalidRequest(f"input {name!r} has {array.shape[-1]} positions; the model takes at most "
                                 f"{limits.max_seq_len}")
        if limits.max_windows and limits.sequence_rank == 2 and array.shape[1] > limits.max_windows:
            raise InvalidRequest(f"input {name!r} has {array.shape[1]} windows per text; at most "
                                 f"{limits.max_windows}")
        if array.size and (int(array.min()) < 0 or int(array.max()) >= limit):
            raise InvalidRequest(f"input {name!r} holds values outside [0, {limit}) "
                                 f"(min {int(array.min())}, max {int(array.max())})")


def check_finite(outputs: dict[str, np.ndarray]) -> None:
    """Raise InvalidRequest when an output holds NaN or infinity (never answered as numbers)."""
    for name, value in outputs.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise InvalidRequest(f"the model produced non-finite values in {name!r}")
