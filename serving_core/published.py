"""The wire formats of PaddleNLP's and FastDeploy's published serving examples, in one place.

Their clients keep working against our services because these are spoken beside our own:
- Triton token_cls `OUTPUT`: one string per text, a Python literal list of
  {"pos": [first, last], "label": kind} (`last` inclusive), read with ast.literal_eval;
- Paddle Serving: PipelineClient sends a numpy array as its repr (`array([b'..'], dtype=object)`)
  under `sentence` (seq_cls) or `tokens` (token_cls), and the clients `eval` the answer's values:
  `label` / `confidence` as numpy reprs, multi-label `label` as a list of "id,id" strings,
  token_cls `value` (entities as JSON) and `tokens_label` (per-token tag ids as JSON).
Request values are read with `ast`, never evaluated: only a list of string or bytes literals
(or of lists of them: text pre-split into characters) is accepted.
"""
from __future__ import annotations

import ast
import json

import numpy as np

from .errors import InvalidRequest
from .token_cls import Entity

# Paddle Serving feed keys of the published clients, per task.
PADDLE_SERVING_KEYS = {"seq_cls": "sentence", "token_cls": "tokens"}


def published_entities(entities: list[Entity]) -> str:
    """Triton token_cls `OUTPUT` for one text: character offsets, `last` inclusive."""
    return repr([{"pos": [e.start, e.end - 1], "label": e.label} for e in entities])


def _text(node: ast.AST, key: str, characters: bool = True) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        try:
            return node.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{key!r} holds bytes that are not UTF-8 ({exc.reason})") from None
    if characters and isinstance(node, ast.List):  # one text given as its characters (is_split_into_words)
        return "".join(_text(item, key, characters=False) for item in node.elts)
    raise InvalidRequest(f"{key!r} may hold only string or bytes literals")


def read_array_repr(value: str, key: str, max_literals: int) -> list[str]:
    """The texts in a PipelineClient value: `array([...], dtype=...)` or a plain list literal.

    Nothing is evaluated: the value is parsed with `ast` and only literals are read; names,
    calls other than `array(...)`, operators and nesting deeper than text-as-characters are
    refused with InvalidRequest. So is a value quoting more than `max_literals` strings
    (counted before parsing: a syntax tree costs about 1 kB a literal).
    """
    if value.count("'") + value.count('"') > 2 * max_literals:
        raise InvalidRequest(f"{key!r} holds more than {max_literals} string literals; send fewer texts, or "
                             "texts whole instead of split into characters")
    try:
        node = ast.parse(value.strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise InvalidRequest(f"{key!r} is not a numpy array or list of strings") from None
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == "array" and len(node.args) == 1
                and all(k.arg == "dtype" and isinstance(k.value, (ast.Constant, ast.Name)) for k in node.keywords)):
            raise InvalidRequest(f"{key!r}: only array([...], dtype=...) of strings is accepted")
        node = node.args[0]
    if not isinstance(node, ast.List):
        raise InvalidRequest(f"{key!r} must hold a list of texts")
    return [_text(item, key) for item in node.elts]


def seq_cls_fields(label: np.ndarray, confidence: np.ndarray, selected: np.ndarray | None) -> dict[str, str]:
    """What the published seq_cls services answer: numpy reprs of `label` and `confidence`
    (single-label), or `label` as one "id,id" string per text (multi-label, `selected` [B, C])."""
    if selected is not None:
        return {"label": repr([",".join(str(i) for i in np.flatnonzero(row)) for row in selected])}
    return {"label": repr(np.asarray(label, dtype=np.int64)), "confidence": repr(np.asarray(confidence, np.float32))}


def token_cls_fields(entities: list[list[Entity]], tags: list[np.ndarray], outside: int) -> dict[str, str]:
    """What the published token_cls service answers: `value`, each text's entities
    ({"pos": [first, last], "entity", "label"}, `last` inclusive), and `tokens_label`, each
    text's tag ids with [CLS] and [SEP] places, padded to the longest (`outside` there)."""
    value = [[{"pos": [e.start, e.end - 1], "entity": e.text, "label": e.label} for e in row] for row in entities]
    width = max((len(t) for t in tags), default=0) + 2
    rows = [[outside, *map(int, t), outside] + [outside] * (width - len(t) - 2) for t in tags]
    return {"value": json.dumps(value), "tokens_label": json.dumps(rows)}
