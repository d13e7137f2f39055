"""Our tokenizer (Rust `tokenizers`, as the tokenizer step runs it) against PaddleNLP's Python
ErnieTokenizer, on batches of 64 texts: time per batch and whether the ids are identical."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TokenizerTiming:
    texts: str  # which texts
    batch: int
    ours_ms: float  # median per batch
    paddlenlp_ms: float
    speedup: float
    identical_ids: bool


def _median_ms(fn, batches, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        for batch in batches:
            started = time.perf_counter()
            fn(batch)
            times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def compare(model_dir: Path, texts: dict[str, list[str]], batch: int = 64, max_seq_len: int = 128,
            repeats: int = 3) -> list[TokenizerTiming]:
    """One row per named text set; `texts[name]` is cut into batches of `batch`."""
    from paddlenlp.transformers import AutoTokenizer

    from serving_core.tokenization import ErnieTokenizer, settings_from_tokenizer_config

    model_dir = Path(model_dir)
    ours = ErnieTokenizer.from_files(model_dir / "vocab.txt", settings_from_tokenizer_config(model_dir, max_seq_len))
    theirs = AutoTokenizer.from_pretrained(str(model_dir))

    def paddlenlp_encode(rows):
        return theirs(rows, max_length=max_seq_len, truncation=True, padding=True)

    rows = []
    for name, all_texts in texts.items():
        batches = [all_texts[i:i + batch] for i in range(0, len(all_texts) - batch + 1, batch)] or [all_texts]
        identical = True
        for b in batches:
            encoded, reference = ours.encode(b), paddlenlp_encode(b)
            identical &= encoded.input_ids.tolist() == reference["input_ids"]
            identical &= encoded.token_type_ids.tolist() == reference["token_type_ids"]
        ours_ms = _median_ms(ours.encode, batches, repeats)
        theirs_ms = _median_ms(paddlenlp_encode, batches, repeats)
        rows.append(TokenizerTiming(name, len(batches[0]), ours_ms, theirs_ms, theirs_ms / ours_ms, bool(identical)))
    return rows
