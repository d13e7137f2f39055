"""The benchmark's workloads: which task, what one request carries, and the texts.

Texts come from the example data (car-assistant commands), cut to a token budget. Texts of a
stated length are made of CJK characters only: every ERNIE vocabulary (the example's, and
ERNIE 3.0's 40000 tokens of the benchmark's sized models) gives one token per CJK character, so
`n` characters are `n + 2` tokens with [CLS] and [SEP]. (Digits and Latin words would not be:
"Taylor Swift" or "22" are one or two word pieces, and a 14-character command with them came
to 6-15 tokens on ERNIE 3.0's vocabulary, so requests of one workload differed in length.)
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

import numpy as np

from serving_core.interface import Task


@dataclass(frozen=True)
class Workload:
    """`requests[i]` is one request: a list of rows, a row is (text,) or (question, context)."""

    name: str
    task: Task
    texts_per_request: int
    tokens_per_text: int  # the target length, [CLS] and [SEP] included (0: lengths vary)
    description: str
    requests: list[list[tuple[str, ...]]]

    @property
    def rows(self) -> list[tuple[str, ...]]:
        return [row for request in self.requests for row in request]


CJK = re.compile(r"[\u4e00-\u9fff，]+")  # CJK unified ideographs and the full-width comma
WORKLOAD_NAMES = ("seq_cls_short", "seq_cls_varied", "seq_cls_long", "token_cls", "qa")


def commands(seed: int, count: int, cjk_only: bool = False) -> list[str]:
    """`count` car-assistant commands drawn from the example intents; `cjk_only`: only those of
    CJK characters (one token per character)."""
    from builder.example import intents

    base = [t for t, _ in intents.examples(0, per_template=50) if not cjk_only or CJK.fullmatch(t)]
    rng = np.random.default_rng(seed)
    return [base[i] for i in rng.integers(0, len(base), count)]


def texts_of_length(seed: int, count: int, characters: int) -> list[str]:
    """CJK commands joined with '，' and cut to exactly `characters` characters each."""
    pool = iter(commands(seed, count * (characters // 4 + 2), cjk_only=True))
    texts = []
    for _ in range(count):
        text = ""
        while len(text) < characters:
            text = f"{text}，{next(pool)}" if text else next(pool)
        texts.append(text[:characters])
    return texts


def texts_of_varied_length(seed: int, count: int, shortest: int, longest: int) -> list[str]:
    """`count` texts of `shortest` to `longest` characters, each length drawn uniformly."""
    lengths = np.random.default_rng(seed).integers(shortest, longest + 1, count)
    return [texts_of_length(seed + i, 1, int(n))[0] for i, n in enumerate(lengths)]


def make_texts(count: int, long: bool, seed: int = 0) -> list[str]:
    """Short commands as they come (about 9 tokens), or 14 of them joined (about 120 tokens)."""
    texts = commands(seed, count)
    if long:
        rng = np.random.default_rng(seed)
        texts = ["，".join(commands(int(rng.integers(1 << 30)), 14)) for _ in range(count)]
    return texts


def _split(rows: list[tuple[str, ...]], per_request: int) -> list[list[tuple[str, ...]]]:
    return [rows[i:i + per_request] for i in range(0, len(rows) - per_request + 1, per_request)]


def standard_workloads(requests: int = 64, seed: int = 0) -> dict[str, Workload]:
    """The workloads of `benchmarks.run`, each with `requests` distinct requests (reused in a loop)."""
    from builder.example import intents

    qa_rows = intents.qa_examples(seed + 2, count=requests, commands=64)
    workloads = [
        Workload("seq_cls_short", Task.SEQ_CLS, 1, 16, "one 16-token command a request (the car-voice case)",
                 _split([(t,) for t in texts_of_length(seed, requests, 14)], 1)),
        Workload("seq_cls_varied", Task.SEQ_CLS, 1, 0, "one command of 8-32 tokens a request (lengths as spoken "
                 "commands vary; every new length is a new shape for the engine)",
                 _split([(t,) for t in texts_of_varied_length(seed + 4, requests, 6, 30)], 1)),
        Workload("seq_cls_long", Task.SEQ_CLS, 32, 128, "32 texts of 128 tokens a request",
                 _split([(t,) for t in texts_of_length(seed + 1, 32 * requests, 126)], 32)),
        Workload("token_cls", Task.TOKEN_CLS, 8, 64, "8 sentences of 64 tokens a request (one window each)",
                 _split([(t,) for t in texts_of_length(seed + 3, 8 * requests, 62)], 8)),
        Workload("qa", Task.QA, 1, 0, "one question over a long context (about 370 characters, 4+ windows)",
                 _split([(q, c) for q, c, _, _ in qa_rows], 1)),
    ]
    assert tuple(w.name for w in workloads) == WORKLOAD_NAMES
    return {w.name: w for w in workloads}


FILLER = "导航到北京西站然后播放周杰伦的歌"  # CJK: one token a character


def parse_shape(text: str) -> tuple[str, tuple[int, str]]:
    """"8x16" -> ("8 x 16", (8, a text of 16 tokens with [CLS] and [SEP]))."""
    try:
        count, tokens = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a shape as TEXTSxTOKENS, e.g. 8x16") from None
    if count < 1 or tokens < 3:
        raise argparse.ArgumentTypeError(f"{text!r}: at least one text of three tokens")
    return f"{count} x {tokens}", (count, (FILLER * (tokens // len(FILLER) + 1))[:tokens - 2])
