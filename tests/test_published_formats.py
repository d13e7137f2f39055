"""The published clients' wire formats (serving_core/published.py), read safely and written exactly."""
from __future__ import annotations

import ast
import json
import sys

import numpy as np
import pytest

from serving_core.errors import InvalidRequest
from serving_core.published import published_entities, read_array_repr, seq_cls_fields, token_cls_fields
from serving_core.seq_cls import flat_decisions
from serving_core.token_cls import Entity


def _client_repr(value) -> str:
    """What PipelineClient sends for a feed value (numpy repr, no summarising)."""
    np.set_printoptions(threshold=sys.maxsize)
    return (value if isinstance(value, np.ndarray) else np.array(value)).__repr__()


@pytest.mark.parametrize("value, texts", [
    (np.array(["打开空调".encode(), b"play"], dtype=np.object_), ["打开空调", "play"]),
    (["北京的涮肉", "原产玛雅"], ["北京的涮肉", "原产玛雅"]),
    ([list("从首都利隆圭")], ["从首都利隆圭"]),
])
def test_what_pipeline_client_sends_is_read(value, texts):
    assert read_array_repr(_client_repr(value), "sentence", 100) == texts


@pytest.mark.parametrize("value", [
    "__import__('os').system('touch /tmp/pwned')",
    "array([__import__('os').getcwd()])",
    "array(['a'], dtype=__import__('os').system)",
    "numpy.array(['a'])",
    "['a' + 'b']",
    "[[['deep']]]",
    "{'a': 1}",
    "array([1, 2])",
    "not python at all (",
])
def test_anything_but_literal_texts_is_refused_unevaluated(value):
    with pytest.raises(InvalidRequest):
        read_array_repr(value, "sentence", 100)


def test_bounds_and_encoding():
    with pytest.raises(InvalidRequest, match="more than 3 string literals"):
        read_array_repr(_client_repr(["a", "b", "c", "d"]), "sentence", 3)
    with pytest.raises(InvalidRequest, match="UTF-8"):
        read_array_repr("array([b'\\xff'], dtype=object)", "sentence", 3)


def test_answers_evaluate_as_the_published_clients_evaluate_them():
    from numpy import array, float32  # noqa: F401  (what their scripts import before eval)

    fields = seq_cls_fields(np.array([2, 0]), np.array([0.9, 0.7], dtype=np.float32), None)
    assert list(fields) == ["label", "confidence"]
    assert eval(fields["label"]).tolist() == [2, 0]
    assert np.allclose(eval(fields["confidence"]), [0.9, 0.7])
    multi = seq_cls_fields(np.array([0, 0]), np.array([0.9, 0.7]), np.array([[True, False, True], [False] * 3]))
    assert eval(multi["label"]) == ["0,2", ""]


def test_token_cls_formats():
    entities = [Entity("PER", "周杰伦", 2, 5, 0.9), Entity("LOC", "北京", 7, 9, 0.8)]
    output = ast.literal_eval(published_entities(entities))
    assert output == [{"pos": [2, 4], "label": "PER"}, {"pos": [7, 8], "label": "LOC"}]
    fields = token_cls_fields([entities, []], [np.array([1, 2]), np.array([0])], outside=0)
    assert json.loads(fields["value"])[0][0] == {"pos": [2, 4], "entity": "周杰伦", "label": "PER"}
    assert json.loads(fields["tokens_label"]) == [[0, 1, 2, 0], [0, 0, 0, 0]]


def test_multi_label_decisions_are_flat_with_one_separator_between_texts():
    selected = np.array([[True, False, True], [False, False, False], [False, True, False]])
    probabilities = np.array([[0.9, 0.1, 0.6], [0.2, 0.3, 0.1], [0.1, 0.8, 0.2]])
    ids, confidences = flat_decisions(selected, probabilities, -1)
    assert ids.tolist() == [0, 2, -1, -1, 1]
    assert np.allclose(confidences, [0.9, 0.6, -1, -1, 0.8])
    assert flat_decisions(selected[:1], probabilities[:1], -1)[0].tolist() == [0, 2]
