"""ERNIE WordPiece tokenization with the Rust `tokenizers` library.

Configured to reproduce PaddleNLP's `ErnieTokenizer` token for token: PaddleNLP's
BasicTokenizer isolates Unicode symbols (category S and a few other characters) as well
as punctuation, which plain BERT pre-tokenization does not; the extra `Split` below does.
Parity is proven on hard text in tests/test_tokenizer_parity.py.
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

# Characters PaddleNLP's BasicTokenizer splits off as single tokens beyond BERT punctuation.
_SYMBOLS = r"[\p{S}\x{00AD}\x{00B2}\x{00BA}\x{3007}\x{00B5}\x{00D8}\x{014B}\x{01B1}]"
_MAX_CHARS_PER_WORD = 100  # PaddleNLP WordpieceTokenizer.max_input_chars_per_word
# Text is cut by characters before it is tokenized, so that one huge text cannot make the
# tokenizer's work and memory grow without bound. The bound is generous: a token takes one
# character (CJK) to a few (words); 16 per token keeps every token the model would see.
CHARS_PER_TOKEN_BOUND = 16
MIN_CHAR_LIMIT = 1024


def char_limit(tokens: int) -> int:
    """Characters of a text kept before tokenizing when at most `tokens` tokens are used."""
    return max(MIN_CHAR_LIMIT, CHARS_PER_TOKEN_BOUND * tokens)


def clip_texts(texts: list[str], limit: int) -> tuple[list[str], np.ndarray]:
    """Texts cut to `limit` characters (0: no limit), and which of them were cut."""
    if not limit:
        return texts, np.zeros(len(texts), dtype=bool)
    cut = np.fromiter((len(t) > limit for t in texts), dtype=bool, count=len(texts))
    return ([t[:limit] for t in texts] if cut.any() else texts), cut


def is_blank(text: str) -> bool:
    """Whitespace, NUL and other control or format characters only: nothing to tokenize."""
    return all(c.isspace() or unicodedata.category(c)[0] == "C" for c in text)


DEFAULT_MAX_SEQ_LEN = 128  # tokens a window holds, [CLS] and [SEP] included, unless the model allows fewer


@dataclass(frozen=True)
class TokenizerSettings:
    """How text becomes model input; written into the tokenizer step's config."""

    vocab_file: str = "vocab.txt"
    do_lower_case: bool = True
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
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
    """A padded batch: ids [B, L], type ids [B, L], real lengths, truncation flags."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray
    truncated: np.ndarray


VOCAB_FILE_LIMIT = 64 * 2**20  # the largest real vocabularies (250k tokens) are a few MiB
SETTINGS_FILE_LIMIT = 16 * 2**20


def _checked_size(path: Path, limit: int) -> None:
    size = Path(path).stat().st_size
    if size > limit:
        raise UserError(f"is {size / 2**20:.0f} MiB; no real one is over {limit / 2**20:.0f} MiB: is it the right "
                        "file?", str(path))


def read_vocab_lines(path: Path) -> list[str]:
    """vocab.txt's tokens as PaddleNLP's `load_vocabulary` reads them: one a line (universal
    newlines), only the line break removed, a UTF-8 BOM kept as part of the first token. A
    tokenizer.json's WordPiece vocabulary as the same list (token at its id, "" for unused ids)."""
    _checked_size(path, VOCAB_FILE_LIMIT)
    if Path(path).suffix == ".json":
        return _tokenizer_json_vocab(path)
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as exc:
        raise UserError(f"is not UTF-8 text ({exc}); save the vocabulary as UTF-8, one token a line",
                        str(path)) from None


def vocab_from_lines(lines: list[str], path: Path) -> dict[str, int]:
    """Token -> id, id = line number. A token listed twice has the id of its last line, as
    PaddleNLP gives it; empty lines hold no token."""
    vocab = {token: index for index, token in enumerate(lines) if token}
    if not vocab:
        raise UserError("the vocabulary is empty", str(path))
    return vocab


def read_vocab(path: Path) -> dict[str, int]:
    """PaddleNLP vocab.txt as token -> id (`vocab_from_lines`)."""
    return vocab_from_lines(read_vocab_lines(path), path)


def duplicated_tokens(lines: list[str]) -> dict[str, list[int]]:
    """Tokens listed more than once, with the ids (line numbers) of every listing; PaddleNLP
    and the served tokenizer give such a token the last."""
    seen: dict[str, list[int]] = {}
    for index, token in enumerate(lines):
        if token:
            seen.setdefault(token, []).append(index)
    return {token: ids for token, ids in seen.items() if len(ids) > 1}


def truncated_lengths(first: int, second: int | None, budget: int) -> tuple[int, int]:
    """Lengths kept by PaddleNLP's `longest_first`: cut the longer text one token at a time,
    the second text first on ties. `budget` excludes special tokens."""
    if second is None:
        return min(first, max(budget, 0)), 0
    excess = first + second - max(budget, 0)
    if excess <= 0:
        return first, second
    if first > second:
        cut = min(excess, first - second)
        first, excess = first - cut, excess - cut
    elif second > first:
        cut = min(excess, second - first)
        second, excess = second - cut, excess - cut
    # Now equal lengths: cuts alternate, starting with the second text.
    return first - excess // 2, second - (excess - excess // 2)


def _tokenizer_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise UserError(f"invalid JSON ({type(exc).__name__}: {str(exc)[:200]})", str(path)) from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "WordPiece":
        kind = model.get("type") if isinstance(model, dict) else None
        raise UserError(f"its model is {kind!r}; the builder serves BERT's WordPiece tokenizers", str(path))
    return data


def _tokenizer_json_vocab(path: Path) -> list[str]:
    vocab = _tokenizer_json(path)["model"].get("vocab")
    if not isinstance(vocab, dict) or not vocab or not all(
            isinstance(t, str) and isinstance(i, int) and 0 <= i < 2**24 for t, i in vocab.items()):
        raise UserError("its WordPiece vocab must map tokens to ids", str(path))
    lines = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        lines[index] = token
    return lines


def _rust_tokenizer_from_json(path: Path):
    """HF's tokenizer exactly as tokenizer.json describes it (normalizer, pre-tokenizer,
    WordPiece), its own truncation, padding and special-token template off: done by ErnieTokenizer."""
    from tokenizers import Tokenizer

    _tokenizer_json(path)  # a WordPiece model, or refused by name
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class ErnieTokenizer:
    """Batch tokenizer for one model: text (and optional pair) -> padded id arrays.

    Rust does normalization, pre-tokenization and WordPiece: as PaddleNLP's tokenizer does from
    a vocab.txt, or as HF's does from a tokenizer.json (`vocab_file` names one). Truncation and
    the special tokens ([CLS] A [SEP] B [SEP]) are done here, to follow PaddleNLP's rules exactly.
    """

    def __init__(self, vocab: dict[str, int], settings: TokenizerSettings, vocab_file: str | None = None):
        missing = [t for t in settings.special_tokens if t not in vocab]
        if missing:
            first = min(vocab, key=vocab.get)
            bom = (f"; its first line starts with a UTF-8 BOM, which PaddleNLP reads as part of the token "
                   f"({first!r}): save vocab.txt without the BOM") if first.startswith("\ufeff") else ""
            raise UserError(f"special tokens {missing} are not in the vocabulary{bom}; "
                            "pass the vocab.txt the model was trained with", vocab_file)
        self.settings = settings
        self.pad_id = vocab[settings.pad_token]
        self.cls_id, self.sep_id = vocab[settings.cls_token], vocab[settings.sep_token]
        self._id_to_token = {i: t for t, i in vocab.items()}
        self.vocab_size = max(vocab.values()) + 1
        from_json = vocab_file is not None and Path(vocab_file).suffix == ".json"
        self._tokenizer = _rust_tokenizer_from_json(Path(vocab_file)) if from_json \
            else _build_rust_tokenizer(vocab, settings)

    @classmethod
    def from_files(cls, vocab_file: Path, settings: TokenizerSettings) -> "ErnieTokenizer":
        return cls(read_vocab(vocab_file), settings, str(vocab_file))

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> EncodedBatch:
        """Tokenize, truncate to max_seq_len (longest first for pairs) and pad to the longest.

        Text is first cut to `char_limit(max_seq_len)` characters; a cut text is flagged truncated."""
        limit = char_limit(self.settings.max_seq_len)
        texts, clipped = clip_texts(texts, limit)
        if pairs is not None:
            pairs, clipped_pairs = clip_texts(pairs, limit)
            clipped = clipped | clipped_pairs
        # Encoding.ids builds a new Python list on every access: read each once.
        first = [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]
        second = [e.ids for e in self._tokenizer.encode_batch(pairs, add_special_tokens=False)] \
            if pairs is not None else None
        budget = self.settings.max_seq_len - (3 if second is not None else 2)
        rows_ids, rows_types, truncated = [], [], []
        cls, sep = [self.cls_id], [self.sep_id]
        for row, first_ids in enumerate(first):
            pair = second[row] if second is not None else None
            keep_a, keep_b = truncated_lengths(len(first_ids), len(pair) if pair is not None else None, budget)
            ids = cls + first_ids[:keep_a] + sep
            types = [0] * len(ids)
            cut = keep_a < len(first_ids)
            if pair is not None:
                ids += pair[:keep_b] + sep
                types += [1] * (keep_b + 1)
                cut = cut or keep_b < len(pair)
            rows_ids.append(ids)
            rows_types.append(types)
            truncated.append(cut or bool(clipped[row]))
        size = len(rows_ids)
        lengths = np.fromiter((len(ids) for ids in rows_ids), dtype=np.int64, count=size)
        width = int(lengths.max()) if size else 0
        input_ids = np.full((size, width), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((size, width), dtype=np.int64)
        for row in range(size):
            input_ids[row, : lengths[row]] = rows_ids[row]
            token_type_ids[row, : lengths[row]] = rows_types[row]
        return EncodedBatch(input_ids, token_type_ids, lengths, np.array(truncated, dtype=bool))

    def pieces(self, texts: list[str]):
        """WordPiece encodings (ids, offsets) without special tokens or truncation."""
        return self._tokenizer.encode_batch(texts, add_special_tokens=False)

    def tokens(self, text: str, pair: str | None = None) -> list[str]:
        """Tokens with special tokens, for debugging and parity tests."""
        batch = self.encode([text], [pair] if pair is not None else None)
        return [self._id_to_token[i] for i in batch.input_ids[0, : batch.lengths[0]]]


def _build_rust_tokenizer(vocab: dict[str, int], settings: TokenizerSettings):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token=settings.unk_token,
                                           max_input_chars_per_word=_MAX_CHARS_PER_WORD))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None,
        lowercase=settings.do_lower_case)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.BertPreTokenizer(),
        pre_tokenizers.Split(Regex(_SYMBOLS), behavior="isolated"),
    ])
    tokenizer.decoder = decoders.WordPiece()
    # Special tokens typed in text stay whole, as with PaddleNLP's from_pretrained tokenizer.
    tokenizer.add_special_tokens(list(settings.special_tokens))
    return tokenizer


def settings_from_tokenizer_config(directory: Path, max_seq_len: int) -> TokenizerSettings:
    """Read PaddleNLP's tokenizer_config.json / special_tokens_map.json when present."""
    values: dict = {}
    origin: dict[str, Path] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = directory / name
        if path.is_file():
            _checked_size(path, SETTINGS_FILE_LIMIT)
            try:
                loaded = json.loads(path.read_bytes().decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, nesting too deep
                raise UserError(f"invalid JSON ({type(exc).__name__}: {str(exc)[:200]}); fix or delete it",
                                str(path)) from None
            if not isinstance(loaded, dict):
                raise UserError("a tokenizer settings file is a JSON object", str(path))
            values.update(loaded)
            origin.update(dict.fromkeys(loaded, path))

    def token(key: str, default: str) -> str:
        value = values.get(key, default)
        value = value.get("content", default) if isinstance(value, dict) else value
        if not isinstance(value, str) or not value:
            raise UserError(f"{key} is {str(value)[:80]!r}; a special token is a non-empty string", str(origin[key]))
        return value

    return TokenizerSettings(
        do_lower_case=bool(values.get("do_lower_case", True)),
        max_seq_len=max_seq_len,
        unk_token=token("unk_token", "[UNK]"), pad_token=token("pad_token", "[PAD]"),
        cls_token=token("cls_token", "[CLS]"), sep_token=token("sep_token", "[SEP]"),
        mask_token=token("mask_token", "[MASK]"))


# Model input names the tokenizer step knows how to fill, by what they hold.
INPUT_IDS = "input_ids"
KNOWN_MODEL_INPUTS = (INPUT_IDS, "token_type_ids", "attention_mask", "position_ids")


def feeds_from_ids(names: list[str], input_ids: np.ndarray, token_type_ids: np.ndarray,
                   pad_id: int) -> dict[str, np.ndarray]:
    """The arrays (int64, any leading axes, sequence last) for model inputs called `names`."""
    known = {"input_ids": lambda: input_ids, "token_type_ids": lambda: token_type_ids,
             "attention_mask": lambda: (input_ids != pad_id).astype(np.int64),
             "position_ids": lambda: np.broadcast_to(np.arange(input_ids.shape[-1], dtype=np.int64),
                                                     input_ids.shape).copy()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise KeyError(f"unknown model inputs {unknown}; known: {', '.join(KNOWN_MODEL_INPUTS)}")
    return {name: known[name]() for name in names}


def pad_to_width(array: np.ndarray, width: int, pad: int) -> np.ndarray:
    """Pad the last axis to `width` (native backends and Paddle Serving's auto-batching stack
    requests only when their shapes are equal)."""
    out = np.full((*array.shape[:-1], width), pad, dtype=array.dtype)
    out[..., : array.shape[-1]] = array
    return out


def pad_value_for(name: str, pad_id: int) -> int:
    """What to pad a model input with when the model step joins requests of different lengths."""
    return pad_id if name == "input_ids" else 0
