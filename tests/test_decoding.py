"""Decoding units without a server: entities, windows, QA spans, the model step's batching."""
from __future__ import annotations

import numpy as np
import pytest

from serving_core.qa import QASettings, best_answer
from serving_core.runtime import RequestBatcher, token_budget_groups
from serving_core.program import ProgramSignature
from serving_core.tensors import TensorSpec
from serving_core.token_cls import (TagScheme, TokenClsSettings, decode_entities, detect_scheme, pack_spans, spans,
                                    unpack_spans)
from serving_core.windows import merge_windows, window_starts

BIO = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def _one_hot(tags, labels):
    probabilities = np.full((len(tags), len(labels)), 0.01, dtype=np.float32)
    for i, tag in enumerate(tags):
        probabilities[i, labels.index(tag)] = 0.96
    return probabilities


def _entities(text, tags, offsets, labels=BIO, scheme="bio"):
    return [(e.label, e.text, e.start, e.end) for e in
            decode_entities(text, _one_hot(tags, labels), np.array(offsets), TokenClsSettings(labels, scheme))]


def test_entity_right_before_a_b_tag_and_at_the_end():
    text = "刘德华张学友北京"
    tags = ["B-PER", "I-PER", "I-PER", "B-PER", "I-PER", "I-PER", "B-LOC", "I-LOC"]
    offsets = [(i, i + 1) for i in range(8)]
    assert _entities(text, tags, offsets) == [("PER", "刘德华", 0, 3), ("PER", "张学友", 3, 6), ("LOC", "北京", 6, 8)]


def test_i_without_b_starts_an_entity_and_type_change_splits():
    tags = ["O", "I-PER", "I-PER", "I-LOC", "O"]
    assert _entities("a刘德华b", tags, [(i, i + 1) for i in range(5)]) == [
        ("PER", "刘德", 1, 3), ("LOC", "华", 3, 4)]


def test_word_pieces_and_whitespace_use_real_offsets():
    text = "play  Taylor Swift now"
    # tokens: play | tay ##lor | swift | now -- offsets from the tokenizer, not one char per token
    offsets = [(0, 4), (6, 9), (9, 12), (13, 18), (19, 22)]
    tags = ["O", "B-PER", "I-PER", "I-PER", "O"]
    assert _entities(text, tags, offsets) == [("PER", "Taylor Swift", 6, 18)]


def test_full_width_and_emoji_offsets_are_characters():
    text = "🎉去ＡＢＣ广场"
    offsets = [(0, 1), (1, 2), (2, 5), (5, 6), (6, 7)]
    tags = ["O", "O", "B-LOC", "I-LOC", "I-LOC"]
    ((label, entity, start, end),) = _entities(text, tags, offsets)
    assert entity == "ＡＢＣ广场" == text[start:end] and (start, end) == (2, 7)


def test_bioes_and_io_schemes():
    labels = ("O", "B-X", "I-X", "E-X", "S-X")
    assert detect_scheme(labels) is TagScheme.BIOES
    assert spans(["S-X", "B-X", "I-X", "E-X", "S-X"], TagScheme.BIOES) == [("X", 0, 0), ("X", 1, 3), ("X", 4, 4)]
    assert detect_scheme(("O", "PER", "LOC")) is TagScheme.IO
    assert spans(["PER", "PER", "O", "LOC"], TagScheme.IO) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert detect_scheme(("O", "B-PER", "L-PER", "U-PER")) is TagScheme.BIOES  # BILOU


def test_windows_cover_every_token_with_overlap():
    assert window_starts(26, 8, 4) == [0, 4, 8, 12, 16, 20]  # as PaddleNLP's stride windows
    assert window_starts(38, 23, 8) == [0, 8, 16]  # stride is the step, not the overlap
    assert window_starts(30, 10, 0) == [0, 10, 20]
    assert window_starts(5, 8, 4) == [0]
    assert window_starts(0, 8, 4) == [0]
    for n in range(1, 60):
        starts = window_starts(n, 10, 3)
        covered = set().union(*(range(s, min(s + 10, n)) for s in starts))
        assert covered == set(range(n))


def test_merge_windows_takes_each_token_from_its_most_central_window():
    # 10 tokens, windows [0,6) and [4,10): tokens 4 and 5 are in both.
    index = np.array([[-1, 0, 1, 2, 3, 4, 5, -1], [-1, 4, 5, 6, 7, 8, 9, -1]])
    values = np.zeros((2, 8, 1))
    values[0, :, 0], values[1, :, 0] = 1, 2
    merged = merge_windows(index, values, 10)[:, 0]
    # token 4: position 5 of window 0 (distance 1 to the edge) vs position 1 of window 1 (0): window 0.
    # token 5: distance 0 in window 0, 1 in window 1: window 1.
    assert merged.tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]


def test_entity_across_a_window_edge_is_found_once():
    index = np.array([[-1, 0, 1, 2, 3, -1], [-1, 2, 3, 4, 5, -1]])
    tags_w0 = ["O", "O", "O", "B-PER", "I-PER", "O"]  # positions 0..5 (special at 0 and 5)
    tags_w1 = ["O", "B-PER", "I-PER", "I-PER", "O", "O"]
    logits = np.log(np.stack([_one_hot(tags_w0, BIO), _one_hot(tags_w1, BIO)]))
    from serving_core.token_cls import token_entities

    offsets = np.array([(i, i + 1) for i in range(6)])
    entities = token_entities("abcdef", logits, index, offsets, TokenClsSettings(BIO))
    assert [(e.label, e.start, e.end) for e in entities] == [("PER", 2, 5)]


def test_spans_pack_and_unpack():
    from serving_core.token_cls import Entity

    rows = [[Entity("PER", "刘德华", 3, 6, 0.9)], [], [Entity("LOC", "北京", 0, 2, 0.8), Entity("PER", "x", 5, 6, 0.7)]]
    packed = pack_spans(rows, "entity")
    assert packed["entity_label"].shape == (3, 2) and packed["entity_count"].ravel().tolist() == [1, 0, 2]
    again = [unpack_spans(packed, "entity", row) for row in range(3)]
    assert [[(e.label, e.text, e.start, e.end) for e in r] for r in again] == \
        [[(e.label, e.text, e.start, e.end) for e in r] for r in rows]


class _Dataset(list):
    def __getitem__(self, key):
        return [row[key] for row in self] if isinstance(key, str) else super().__getitem__(key)


@pytest.mark.parametrize("seed", range(5))
def test_best_answer_equals_paddlenlp_compute_prediction(seed):
    from paddlenlp.metrics.squad import compute_prediction

    rng = np.random.default_rng(seed)
    context = "".join(chr(0x4E00 + i) for i in rng.integers(0, 300, 40))
    question_len, windows, length = 4, 3, 20
    token_index = np.full((windows, length), -1)
    features, starts, ends = [], [], []
    for w in range(windows):
        first = w * 10
        size = min(14, 40 - first)
        positions = np.arange(question_len + 2, question_len + 2 + size)
        token_index[w, positions] = np.arange(first, first + size)
        offsets = [None] * (positions[-1] + 2)
        for p in positions:
            offsets[p] = (int(token_index[w, p]), int(token_index[w, p]) + 1)
        features.append({"example_id": 0, "offset_mapping": offsets})
    start_logits = rng.normal(size=(windows, length)).astype(np.float32)
    end_logits = rng.normal(size=(windows, length)).astype(np.float32)
    for w, feature in enumerate(features):
        starts.append(start_logits[w, : len(feature["offset_mapping"])])
        ends.append(end_logits[w, : len(feature["offset_mapping"])])
    expected, _, _ = compute_prediction(_Dataset([{"id": 0, "context": context}]), features, (starts, ends),
                                        False, 20, 30)
    offsets = np.array([(i, i + 1) for i in range(40)])
    answer = best_answer(context, start_logits, end_logits, token_index, offsets, QASettings())
    assert answer.text == expected[0]
    assert context[answer.start:answer.end] == answer.text


def test_no_answer_threshold():
    index = np.array([[-1, 0, 1, 2, -1]])
    flat = np.zeros((1, 5), dtype=np.float32)
    answer = best_answer("abc", flat, flat, index, np.array([(0, 1), (1, 2), (2, 3)]),
                         QASettings(no_answer_threshold=0.5))
    assert answer.text == "" and answer.start == -1


class _EchoRunner:
    """Returns, per row, the number of non-pad ids (and a per-token echo): checks padding and splitting."""

    signature = ProgramSignature((TensorSpec("input_ids", "int64", (-1, -1)),),
                                 (TensorSpec("count", "float32", (-1, 1)), TensorSpec("echo", "float32", (-1, -1))))

    def __init__(self):
        self.batches = []

    def run(self, feeds):
        ids = feeds["input_ids"]
        self.batches.append(ids.shape)
        return {"count": (ids != 0).sum(axis=1, keepdims=True).astype(np.float32), "echo": ids.astype(np.float32)}


def test_request_batcher_pads_runs_once_and_splits_back():
    runner = _EchoRunner()
    batcher = RequestBatcher(runner, {"input_ids": 0}, {"count": 0, "echo": 1})
    requests = [{"input_ids": np.array([[5, 6, 7]])}, {"input_ids": np.array([[8], [9]])}]
    out = batcher.run(requests)
    assert runner.batches == [(3, 3)]
    assert out[0]["count"].ravel().tolist() == [3] and out[1]["count"].ravel().tolist() == [1, 1]
    assert out[0]["echo"].tolist() == [[5, 6, 7]] and out[1]["echo"].tolist() == [[8], [9]]


def test_request_batcher_flattens_windows_and_skips_padding_windows():
    runner = _EchoRunner()
    batcher = RequestBatcher(runner, {"input_ids": 0}, {"count": 1, "echo": 2})
    three_windows = np.array([[[1, 2], [3, 4], [5, 0]]])
    one_window = np.array([[[7, 8]]])
    out = batcher.run([{"input_ids": three_windows}, {"input_ids": one_window}])
    assert runner.batches == [(4, 2)]  # 3 + 1 real windows; the padding windows were not run
    assert out[0]["count"].shape == (1, 3, 1) and out[1]["count"].shape == (1, 1, 1)
    assert out[0]["echo"][0, 2].tolist() == [5, 0] and out[1]["echo"].tolist() == [[[7, 8]]]


def test_token_budget_groups_keep_order_and_isolate_oversized_requests():
    assert token_budget_groups([1, 1, 1], [4, 4, 4], 0) == [[0, 1, 2]]
    assert token_budget_groups([2, 2, 2], [4, 4, 4], 16) == [[0, 1], [2]]
    assert token_budget_groups([1, 8, 1], [4, 4, 4], 16) == [[0], [1], [2]]  # 8 x 4 > 16: alone
    assert token_budget_groups([1, 1], [2, 10], 16) == [[0], [1]]  # the longer width pads both: 2 x 10 > 16


def test_request_batcher_runs_groups_within_the_token_budget():
    runner = _EchoRunner()
    batcher = RequestBatcher(runner, {"input_ids": 0}, {"count": 0, "echo": 1}, max_batch_tokens=6)
    requests = [{"input_ids": np.array([[1, 2, 3]])}, {"input_ids": np.array([[4, 5]])},
                {"input_ids": np.array([[6, 7, 8], [9, 1, 2]])}]
    out = batcher.run(requests)
    assert runner.batches == [(2, 3), (2, 3)]
    assert [o["echo"].tolist() for o in out] == [[[1, 2, 3]], [[4, 5]], [[6, 7, 8], [9, 1, 2]]]


def test_one_request_over_the_token_budget_runs_in_slices():
    runner = _EchoRunner()
    batcher = RequestBatcher(runner, {"input_ids": 0}, {"count": 1, "echo": 2}, max_batch_tokens=4)
    windows = np.arange(1, 11).reshape(1, 5, 2)  # one text, 5 windows of 2 tokens: 10 > 4
    out = batcher.run([{"input_ids": windows}])
    assert runner.batches == [(2, 2), (2, 2), (1, 2)]
    assert out[0]["echo"].tolist() == windows.tolist()
