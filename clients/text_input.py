"""Texts from the command line or a file: one text a line, or `text<TAB>pair` a line."""
from __future__ import annotations

import sys
from pathlib import Path


def read_texts(arguments: list[str], file: str | None, pairs: bool) -> tuple[list[str], list[str] | None]:
    """Texts (and pairs); with pairs, each argument or line is `text<TAB>pair`."""
    if file:
        stream = sys.stdin if file == "-" else open(Path(file), encoding="utf-8")
        with stream:
            lines = [line.rstrip("\n") for line in stream if line.strip()]
    else:
        lines = list(arguments)
    if not pairs:
        return lines, None
    texts, second = [], []
    for number, line in enumerate(lines, 1):
        if "\t" not in line:
            raise ValueError(f"line {number}: a sentence-pair model needs 'text<TAB>pair', got {line!r}")
        first, _, rest = line.partition("\t")
        texts.append(first)
        second.append(rest)
    return texts, second
