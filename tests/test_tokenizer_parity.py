"""Our Rust tokenizer against PaddleNLP's ErnieTokenizer, token for token, on hard text."""
from __future__ import annotations

import numpy as np
import pytest

from serving_core.tokenization import ErnieTokenizer, TokenizerSettings, settings_from_tokenizer_config

from .hard_texts import all_texts

TEXTS = all_texts()


@pytest.fixture(scope="module")
def tokenizers(example_model):
    from paddlenlp.transformers import AutoTokenizer

    def ours(max_seq_len: int) -> ErnieTokenizer:
        settings = settings_from_tokenizer_config(example_model, max_seq_len)
        return ErnieTokenizer.from_files(example_model / "vocab.txt", settings)

    return ours, AutoTokenizer.from_pretrained(str(example_model))


def _paddlenlp_ids(reference, texts, pairs, max_seq_len):
    encoded = reference(texts, text_pair=pairs, max_length=max_seq_len, truncation=True)
    return encoded["input_ids"], encoded["token_type_ids"]


def _assert_same(ours: ErnieTokenizer, reference, texts, pairs, max_seq_len):
    batch = ours.encode(texts, pairs)
    ids, type_ids = _paddlenlp_ids(reference, texts, pairs, max_seq_len)
    mismatches = []
    for row, text in enumerate(texts):
        length = batch.lengths[row]
        if list(batch.input_ids[row, :length]) != ids[row] or list(batch.token_type_ids[row, :length]) != type_ids[row]:
            mismatches.append((text, pairs[row] if pairs else None,
                               ours.tokens(text, pairs[row] if pairs else None),
                               reference.convert_ids_to_tokens(ids[row])))
    assert not mismatches, f"{len(mismatches)}/{len(texts)} differ, first: {mismatches[:3]}"


def test_hard_text_single(tokenizers):
    ours, reference = tokenizers
    _assert_same(ours(512), reference, TEXTS, None, 512)


def test_hard_text_pairs(tokenizers):
    ours, reference = tokenizers
    pairs = list(reversed(TEXTS))
    _assert_same(ours(512), reference, TEXTS, pairs, 512)


@pytest.mark.parametrize("max_seq_len", [3, 8, 16, 33])
def test_truncation_single_and_pairs(tokenizers, max_seq_len):
    ours, reference = tokenizers
    texts = [t for t in TEXTS if t.strip()]
    _assert_same(ours(max_seq_len), reference, texts, None, max_seq_len)
    _assert_same(ours(max_seq_len), reference, texts, list(reversed(texts)), max_seq_len)


def test_truncated_flag_marks_exactly_the_cut_texts(tokenizers):
    ours, reference = tokenizers
    tokenizer = ours(16)
    texts = [t for t in TEXTS if t.strip()]
    full = reference(texts)["input_ids"]
    batch = tokenizer.encode(texts)
    expected = np.array([len(ids) > 16 for ids in full])
    assert expected.any() and (~expected).any()
    np.testing.assert_array_equal(batch.truncated, expected)


def test_padding_and_lengths(tokenizers):
    ours, _ = tokenizers
    batch = ours(128).encode(["打开空调", "导航到北京西站然后去机场"])
    assert batch.input_ids.shape == (2, batch.lengths.max())
    assert (batch.input_ids[0, batch.lengths[0]:] == ours(128).pad_id).all()


def test_settings_come_from_tokenizer_config(example_model):
    settings = settings_from_tokenizer_config(example_model, 64)
    assert settings.do_lower_case and settings.max_seq_len == 64
    assert isinstance(settings, TokenizerSettings)


def _paddlenlp_longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """PaddleNLP's loop, one token at a time (the reference for the closed form)."""
    for _ in range(max(first + second - budget, 0)):
        if first > second:
            first -= 1
        else:
            second -= 1
    return first, second


def test_truncated_lengths_closed_form_matches_the_loop():
    from serving_core.tokenization import truncated_lengths

    for first in range(0, 30):
        for second in range(0, 30):
            for budget in range(0, 40):
                assert truncated_lengths(first, second, budget) == _paddlenlp_longest_first(first, second, budget)


def _offsets_both(tokenizers, texts):
    ours, reference = tokenizers
    tokenizer = ours(512)
    for text in texts:
        mine = tokenizer.pieces([text])[0]
        theirs = reference(text, return_offsets_mapping=True, add_special_tokens=False)
        yield text, mine, theirs


def test_offsets_equal_paddlenlp_on_ordinary_text(tokenizers):
    from builder.example import intents

    texts = [t for t, _, _ in intents.annotated_examples()] + ["播放  周杰伦的 稻香", "play Love Story now",
                                                                 "温度调到22度！"]
    for text, mine, theirs in _offsets_both(tokenizers, texts):
        assert mine.ids == theirs["input_ids"]
        assert [tuple(o) for o in mine.offsets] == [tuple(o) for o in theirs["offset_mapping"]], text


def test_offsets_are_exact_where_paddlenlp_is_not(tokenizers):
    """PaddleNLP's Python offset mapping gives an [UNK] word one character and can take in a
    neighbouring space; ours covers exactly the characters each token came from."""
    for text, mine, theirs in _offsets_both(tokenizers, TEXTS):
        assert mine.ids == theirs["input_ids"]
        for (start, end), token in zip(mine.offsets, mine.tokens):
            piece = text[start:end]
            assert piece and not piece[0].isspace() and not piece[-1].isspace(), (text, token, piece)
    (text, mine, theirs), = _offsets_both(tokenizers, ["ＦＵＬＬ width"])
    assert mine.offsets[0] == (0, 4) and tuple(theirs["offset_mapping"][0]) != (0, 4)


@pytest.mark.parametrize("max_seq_len,stride", [(16, 4), (32, 8), (32, 30), (64, 16)])
def test_qa_windows_equal_paddlenlp_overflow_features(tokenizers, max_seq_len, stride):
    from builder.example import intents
    from serving_core.windows import encode_windows

    ours, reference = tokenizers
    rows = intents.qa_examples(1, count=15, commands=6) + [("谁", t) for t in TEXTS[:40] if t.strip()]
    batch = encode_windows(ours(max_seq_len), [c for _, c, *_ in rows], stride, [q for q, *_ in rows], 64)
    expected = reference([q for q, *_ in rows], [c for _, c, *_ in rows], stride=stride, max_length=max_seq_len,
                         truncation="only_second", return_overflowing_tokens=True)
    features = iter(zip(expected["input_ids"], expected["token_type_ids"]))
    for b in range(len(rows)):
        for w in range(batch.windows[b]):
            ids, types = next(features)
            row = batch.input_ids[b, w]
            assert list(row[: len(ids)]) == ids and (row[len(ids):] == 0).all()
            assert list(batch.token_type_ids[b, w, : len(types)]) == types


# Awkward vocabularies, as real vocab.txt files sometimes are: every token gets the id PaddleNLP's
# tokenizer gives it, on generated vocabularies and texts.
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CHARS = list("打开空调播放音乐导航北京天气") + list("abcdefghijklmnopqrstuvwxyz0123456789") + list(",.!?#-'")
_WORDS = ["play", "love", "story", "hello", "world", "un", "##able", "##s", "##ing", "##lo", "##a", "##b"]
_AWKWARD = {"duplicate": None, "spaces": ["a b", "hello ", " world", "\t"], "empty": [""], "hashes": ["##", "###", "#"],
            "long": ["x" * 101, "##" + "y" * 120, "z" * 100], "crlf": None, "bom": None}


def _awkward_vocab(draw, strategies) -> tuple[list[str], str]:
    """(lines, newline): the base tokens shuffled after the specials, with awkward entries put in."""
    st = strategies
    lines = _SPECIALS + draw(st.permutations(_CHARS + _WORDS))
    kinds = draw(st.sets(st.sampled_from(sorted(_AWKWARD)), min_size=1))
    for kind in sorted(kinds):
        for entry in _AWKWARD[kind] or []:
            lines.insert(draw(st.integers(5, len(lines))), entry)
    if "duplicate" in kinds:  # any token, specials and ## pieces included, listed again anywhere
        for token in draw(st.lists(st.sampled_from(lines[:40]), min_size=1, max_size=6)):
            lines.insert(draw(st.integers(0, len(lines))), token)
    if "bom" in kinds:  # PaddleNLP keeps a BOM in the first token: put an ordinary one first
        lines.insert(0, "\ufeff" + draw(st.sampled_from(_CHARS)))
    return lines, "\r\n" if "crlf" in kinds else "\n"


def _texts(draw, strategies) -> list[str]:
    pieces = strategies.sampled_from(_CHARS + ["play", "love", "hello", "unable", "hellos", "xyz", "##", "#a", "a b",
                                               " ", "  ", "\t", "HELLO", "Play", "播放音乐", "x" * 101, "é", "[", "]"])
    return ["".join(draw(strategies.lists(pieces, min_size=1, max_size=12))) for _ in range(6)]


@pytest.mark.models  # PaddleNLP's tokenizer is the reference
def test_awkward_vocabularies_give_paddlenlps_ids(tmp_path):
    from hypothesis import HealthCheck, given, settings, strategies as st
    from paddlenlp.transformers import ErnieTokenizer as PaddleNLPErnieTokenizer

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def check(data):
        lines, newline = _awkward_vocab(data.draw, st)
        texts = _texts(data.draw, st)
        vocab_file = tmp_path / "vocab.txt"
        prefix = "\ufeff" if lines[0].startswith("\ufeff") else ""
        vocab_file.write_bytes((prefix + newline.join([lines[0].lstrip("\ufeff"), *lines[1:]]) + newline)
                               .encode("utf-8"))
        reference = PaddleNLPErnieTokenizer(str(vocab_file))
        ours = ErnieTokenizer.from_files(vocab_file, TokenizerSettings(max_seq_len=64))
        theirs = reference(texts, max_length=64, truncation=True)["input_ids"]
        batch = ours.encode(texts)
        for row, text in enumerate(texts):
            assert batch.input_ids[row, : batch.lengths[row]].tolist() == theirs[row], (text, lines)

    check()


def test_duplicated_tokens_take_the_last_line_and_are_named(tmp_path):
    from serving_core.tokenization import duplicated_tokens, read_vocab, read_vocab_lines

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(_SPECIALS + ["a", "b", "", "a", "[UNK]"]) + "\n", encoding="utf-8")
    assert read_vocab(vocab_file)["a"] == 8 and read_vocab(vocab_file)["[UNK]"] == 9
    assert duplicated_tokens(read_vocab_lines(vocab_file)) == {"[UNK]": [1, 9], "a": [5, 8]}
    assert ErnieTokenizer.from_files(vocab_file, TokenizerSettings()).encode(["a zz"]).input_ids[0].tolist() == \
        [2, 8, 9, 3]


def test_a_bom_before_a_special_token_is_refused_with_the_reason(tmp_path):
    from serving_core.errors import UserError

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_bytes(b"\xef\xbb\xbf" + "\n".join(_SPECIALS + ["a"]).encode("utf-8"))
    with pytest.raises(UserError, match=r"\['\[PAD\]'\] are not in the vocabulary; its first line starts with a "
                                        "UTF-8 BOM"):
        ErnieTokenizer.from_files(vocab_file, TokenizerSettings())
