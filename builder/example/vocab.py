"""A generated WordPiece vocabulary: special tokens, the data's characters, CJK, ASCII, pieces."""
from __future__ import annotations

import string

# ERNIE 3.0's own order: [PAD] [CLS] [SEP] [MASK] first, [UNK] after (not BERT's).
SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
ENGLISH_WORDS = ["play", "love", "story", "taylor", "swift", "music", "hello", "world", "the", "a", "to",
                 "un", "call", "navigate", "weather", "ok", "hi", "car", "on", "off"]
ENGLISH_PIECES = ["##s", "##ing", "##ed", "##er", "##ly", "##able", "##tion", "##y", "##t", "##o",
                  "##e", "##a", "##i", "##n", "##r", "##l"]
CJK_COMMON = range(0x4E00, 0x4E00 + 3000)  # a slice of CJK Unified Ideographs


def generate_vocab(texts: list[str]) -> list[str]:
    """Tokens in id order; every character of `texts` is covered."""
    tokens = list(SPECIAL_TOKENS)
    tokens += sorted({ch.lower() for text in texts for ch in text if not ch.isspace()})
    tokens += [chr(c) for c in CJK_COMMON]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens += ENGLISH_WORDS + ENGLISH_PIECES
    tokens += ["，", "。", "！", "？", "、", "：", "；", "“", "”", "（", "）", "《", "》"]
    return list(dict.fromkeys(tokens))
