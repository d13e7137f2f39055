"""ERNIE WordPiece tokenization with the Rust `tokenizers` library.

Configured to reproduce PaddleNLP's `ErnieTokenizer` token for token: PaddleNLP's
BasicTokenizer isolates Unicode symbols (category S and a few other characters) as well
as punctuation, which plain BERT pre-tokenization does not; the extra `Split` below does.
Parity is proven on hard text in tests/test_tokenizer_parity.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

# Characters PaddleNLP's BasicTokenizer splits off as single tokens beyond BERT punctuation.
_SYMBOLS = r"[\p{S}\x{00AD}\x{00B2}\x{00BA}\x{3007}\x{00B5}\x{00D8}\x{014B}\x{01B1}]"
_MAX_CHARS_PER_WORD = 100  # PaddleNLP WordpieceTokenizer.max_input_chars_per_word


@dataclass(frozen=True)
class TokenizerSettings:
    """How text becomes model input; written into the tokenizer step's config."""

    vocab_file: str = "vocab.txt"
    do_lower_case: bool = True
    max_seq_len: int = 128
    unk_token: str = "[UNK]"
    pad_token: str = "[PAD]"
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"
    mask_token: str = "[MASK]"

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return (self.unk_token, self.pad_token, self.cls_token, self.sep_token, self.mask_token)


@dataclass
class EncodedBatch:
    """A padded batch: ids [B, L], type ids [B, L], real lengths, truncation flags, offsets."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray
    offsets: list[list[tuple[int, int]]]


def read_vocab(path: Path) -> dict[str, int]:
    """PaddleNLP vocab.txt: one token a line, id = line number."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            token = line.rstrip("\n")
            if token and token not in vocab:
                vocab[token] = index
    if not vocab:
        raise UserError("the vocabulary is empty", str(path))
    return vocab


class ErnieTokenizer:
    """Batch tokenizer for one model: text (and optional pair) -> padded id arrays."""

    def __init__(self, vocab: dict[str, int], settings: TokenizerSettings):
        missing = [t for t in settings.special_tokens if t not in vocab]
        if missing:
            raise UserError(f"special tokens {missing} are not in the vocabulary; "
                            "pass the vocab.txt the model was trained with")
        self.settings = settings
        self.pad_id = vocab[settings.pad_token]
        self._tokenizer = _build_rust_tokenizer(vocab, settings)

    @classmethod
    def from_files(cls, vocab_file: Path, settings: TokenizerSettings) -> "ErnieTokenizer":
        return cls(read_vocab(vocab_file), settings)

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> EncodedBatch:
        """Tokenize, truncate to max_seq_len (longest first for pairs) and pad to the longest."""
        batch = list(zip(texts, pairs)) if pairs is not None else texts
        encodings = self._tokenizer.encode_batch(batch, add_special_tokens=True)
        size = len(encodings)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=size)
        width = int(lengths.max()) if size else 0
        input_ids = np.full((size, width), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((size, width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            input_ids[row, : lengths[row]] = encoding.ids
            token_type_ids[row, : lengths[row]] = encoding.type_ids
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=size)
        offsets = [list(e.offsets) for e in encodings]
        return EncodedBatch(input_ids, token_type_ids, lengths, truncated, offsets)

    def tokens(self, text: str, pair: str | None = None) -> list[str]:
        """Tokens with special tokens, for debugging and parity tests."""
        return self._tokenizer.encode(text, pair).tokens


def _build_rust_tokenizer(vocab: dict[str, int], settings: TokenizerSettings):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token=settings.unk_token,
                                           max_input_chars_per_word=_MAX_CHARS_PER_WORD))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None,
        lowercase=settings.do_lower_case)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.BertPreTokenizer(),
        pre_tokenizers.Split(Regex(_SYMBOLS), behavior="isolated"),
    ])
    cls, sep = settings.cls_token, settings.sep_token
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(list(settings.special_tokens))
    tokenizer.enable_truncation(max_length=settings.max_seq_len, strategy="longest_first")
    return tokenizer


def settings_from_tokenizer_config(directory: Path, max_seq_len: int) -> TokenizerSettings:
    """Read PaddleNLP's tokenizer_config.json / special_tokens_map.json when present."""
    values: dict = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = directory / name
        if path.is_file():
            try:
                values.update(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise UserError(f"invalid JSON ({exc}); fix or delete it", str(path)) from exc

    def token(key: str, default: str) -> str:
        value = values.get(key, default)
        return value.get("content", default) if isinstance(value, dict) else value

    return TokenizerSettings(
        do_lower_case=bool(values.get("do_lower_case", True)),
        max_seq_len=max_seq_len,
        unk_token=token("unk_token", "[UNK]"), pad_token=token("pad_token", "[PAD]"),
        cls_token=token("cls_token", "[CLS]"), sep_token=token("sep_token", "[SEP]"),
        mask_token=token("mask_token", "[MASK]"))


# Model input names the tokenizer step knows how to fill, by what they hold.
KNOWN_MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "position_ids")


def feed_for(name: str, batch: EncodedBatch, pad_id: int) -> np.ndarray:
    """The array for a model input called `name` (int64; the caller casts)."""
    if name == "input_ids":
        return batch.input_ids
    if name == "token_type_ids":
        return batch.token_type_ids
    if name == "attention_mask":
        return (batch.input_ids != pad_id).astype(np.int64)
    if name == "position_ids":
        return np.broadcast_to(np.arange(batch.input_ids.shape[1], dtype=np.int64),
                               batch.input_ids.shape).copy()
    raise KeyError(f"unknown model input {name!r}; known: {', '.join(KNOWN_MODEL_INPUTS)}")


def pad_value_for(name: str, pad_id: int) -> int:
    """What to pad a model input with when the model step joins requests of different lengths."""
    return pad_id if name == "input_ids" else 0
