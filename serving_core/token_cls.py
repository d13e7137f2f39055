"""Token classification decoding: per-token tags -> entities with character offsets.

Offsets come from the tokenizer's offset mapping into the original text (not the "one
character per token" assumption), `end` is exclusive: `text[start:end] == entity text`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class TagScheme(str, enum.Enum):
    BIO = "bio"
    BIOES = "bioes"  # also BILOU: L = E, U = S
    IO = "io"


@dataclass(frozen=True)
class TokenClsSettings:
    labels: tuple[str, ...]
    scheme: str = TagScheme.BIO.value


@dataclass(frozen=True)
class Entity:
    label: str
    text: str
    start: int  # character offset, inclusive
    end: int  # character offset, exclusive
    score: float  # mean probability of the entity's tags

    def to_json(self) -> dict:
        return {"label": self.label, "text": self.text, "start": self.start, "end": self.end,
                "score": round(self.score, 6)}


def split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); 'PER' (IO without prefix) -> ('I', 'PER')."""
    if tag in ("O", ""):
        return "O", ""
    for separator in ("-", "_"):
        prefix, sep, kind = tag.partition(separator)
        if sep and prefix.upper() in ("B", "I", "E", "S", "L", "U"):
            return {"L": "E", "U": "S"}.get(prefix.upper(), prefix.upper()), kind
    return "I", tag


def detect_scheme(labels: tuple[str, ...]) -> TagScheme:
    prefixes = {split_tag(label)[0] for label in labels}
    if prefixes & {"E", "S"}:
        return TagScheme.BIOES
    if "B" in prefixes:
        return TagScheme.BIO
    return TagScheme.IO


def spans(tags: list[str], scheme: TagScheme) -> list[tuple[str, int, int]]:
    """(kind, first token, last token) for each entity. An I- tag that does not continue an
    entity of its kind starts a new one (seqeval's lenient reading); so does E-/S-."""
    found: list[tuple[str, int, int]] = []
    current: list | None = None  # [kind, start, end]

    def close():
        nonlocal current
        if current is not None:
            found.append(tuple(current))
            current = None

    for index, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "O":
            close()
        elif prefix == "B" or prefix == "S":
            close()
            current = [kind, index, index]
            if prefix == "S":
                close()
        elif prefix in ("I", "E"):
            if current is not None and current[0] == kind:
                current[2] = index
            else:
                close()
                current = [kind, index, index]
            if prefix == "E" and scheme is TagScheme.BIOES:
                close()
    close()
    return found


def decode_entities(text: str, probabilities: np.ndarray, offsets: np.ndarray,
                    settings: TokenClsSettings) -> list[Entity]:
    """Entities of one text from per-token probabilities [T, C] and offsets [T, 2]."""
    scheme = TagScheme(settings.scheme)
    best = probabilities.argmax(axis=-1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    tags = [settings.labels[i] for i in best]
    entities = []
    for kind, first, last in spans(tags, scheme):
        start, end = int(offsets[first][0]), int(offsets[last][1])
        score = float(probabilities[np.arange(first, last + 1), best[first:last + 1]].mean())
        entities.append(Entity(kind, text[start:end], start, end, score))
    return entities


def pack_spans(rows: list[list[Entity]], prefix: str) -> dict[str, np.ndarray]:
    """Entities of several texts -> typed tensors `<prefix>_label|text|start|end|score` [B, N]
    (N = most entities of any text, padded with "" / -1 / 0) and `<prefix>_count` [B]."""
    width = max((len(r) for r in rows), default=0)
    batch = len(rows)
    label = np.full((batch, width), b"", dtype=np.object_)
    text = np.full((batch, width), b"", dtype=np.object_)
    start = np.full((batch, width), -1, dtype=np.int32)
    end = np.full((batch, width), -1, dtype=np.int32)
    score = np.zeros((batch, width), dtype=np.float32)
    for b, entities in enumerate(rows):
        for i, entity in enumerate(entities):
            label[b, i], text[b, i] = entity.label.encode("utf-8"), entity.text.encode("utf-8")
            start[b, i], end[b, i], score[b, i] = entity.start, entity.end, entity.score
    return {f"{prefix}_label": label, f"{prefix}_text": text, f"{prefix}_start": start, f"{prefix}_end": end,
            f"{prefix}_score": score, f"{prefix}_count": np.array([len(r) for r in rows], dtype=np.int32)}


def unpack_spans(columns: dict[str, np.ndarray], prefix: str, row: int) -> list[Entity]:
    """The inverse of `pack_spans` for one row (what clients do)."""
    count = int(columns[f"{prefix}_count"][row])

    def text_of(value) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    return [Entity(text_of(columns[f"{prefix}_label"][row, i]), text_of(columns[f"{prefix}_text"][row, i]),
                   int(columns[f"{prefix}_start"][row, i]), int(columns[f"{prefix}_end"][row, i]),
                   float(columns[f"{prefix}_score"][row, i])) for i in range(count)]


def token_probabilities(logits: np.ndarray, token_index: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """[T, C] tag probabilities of one text's tokens from window logits [W, L, C], token_index
    [W, L] and offsets [T, 2] (rows past the text's tokens are -1)."""
    from .seq_cls import softmax
    from .windows import merge_windows

    return merge_windows(token_index, softmax(logits), int((offsets[:, 0] >= 0).sum()))


def token_entities(text: str, logits: np.ndarray, token_index: np.ndarray, offsets: np.ndarray,
                   settings: TokenClsSettings) -> list[Entity]:
    """One text's entities from window logits [W, L, C], token_index [W, L] and offsets [T, 2]."""
    probabilities = token_probabilities(logits, token_index, offsets)
    return decode_entities(text, probabilities, offsets[: len(probabilities)], settings)
