"""The source model run the PaddleNLP way: PaddleNLP's own tokenizer, then the model.

Independent of the serving path in tokenization (PaddleNLP's tokenizer, not our Rust one)
and in the model (PaddleNLP's dygraph model or Paddle Inference on the source program): for
qa the decoding is PaddleNLP's own `compute_prediction` as well. It shares with the serving
path the window layout (`window_starts`, `merge_windows`) and the entity decoding
(`decode_entities`) of token_cls and intent_slot, so `verify` cannot catch a bug in those;
unit tests check them instead (tests/test_decoding.py on hand-made cases, and
tests/test_tokenizer_parity.py the windows against PaddleNLP's overflowing features).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from serving_core.interface import Task
from serving_core.qa import QASettings
from serving_core.runtime import PaddleRunner
from serving_core.seq_cls import softmax
from serving_core.token_cls import Entity, TokenClsSettings, decode_entities
from serving_core.tokenization import feeds_from_ids
from serving_core.windows import merge_windows, window_starts

from .export import load_dygraph_model
from .sources import ModelSource, SourceKind


def paddlenlp_tokenizer(source: ModelSource):
    from paddlenlp.transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source.tokenizer_dir))


def model_function(source: ModelSource, task: Task,
                   pad_id: int = 0) -> Callable[[np.ndarray, np.ndarray], list[np.ndarray]]:
    """(input_ids, token_type_ids) int64 -> the program's outputs, in order (a program's other
    inputs, attention_mask and position_ids, are made from the ids)."""
    import paddle

    if source.kind is SourceKind.CHECKPOINT:
        model = load_dygraph_model(source, task)

        def run(ids, types):
            with paddle.no_grad():
                out = model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(types))
            return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
        return run
    runner = PaddleRunner(source.program)
    specs = runner.signature.inputs
    outputs = [t.name for t in runner.signature.outputs]

    def run(ids, types):
        feeds = feeds_from_ids([t.name for t in specs], ids, types, pad_id)
        result = runner.run({t.name: feeds[t.name].astype(t.dtype) for t in specs})
        return [result[name] for name in outputs]
    return run


def _pad(rows: list[list[int]], value: int) -> np.ndarray:
    width = max(len(r) for r in rows)
    return np.array([r + [value] * (width - len(r)) for r in rows], dtype=np.int64)


def reference_logits(source: ModelSource, texts: list[str], pairs: list[str] | None, max_seq_len: int,
                     batch_size: int = 32) -> np.ndarray:
    """seq_cls: [N, C] logits of the source model."""
    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.SEQ_CLS, tokenizer.pad_token_id)
    parts = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size],
                            text_pair=pairs[start:start + batch_size] if pairs is not None else None,
                            max_length=max_seq_len, truncation=True)
        parts.append(run(_pad(encoded["input_ids"], tokenizer.pad_token_id), _pad(encoded["token_type_ids"], 0))[0])
    return np.concatenate(parts).astype(np.float32)


class TokenizationMismatch(ValueError):
    """PaddleNLP and the serving tokenizer produced different token ids for a text."""


def _windows_of(tokenizer, text: str, max_seq_len: int, stride: int, max_windows: int = 0, char_offsets=None):
    """PaddleNLP's tokens of the whole text, cut into [CLS] window [SEP] rows; token_index per row.

    Character offsets come from `char_offsets(text) -> (ids, offsets)` when given: PaddleNLP's
    Python offset mapping is wrong on [UNK] words (one character) and next to removed
    characters (it takes in a space), so the served offsets are checked against the exact
    Rust mapping of the very same token ids.
    """
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if char_offsets is not None:
        exact_ids, offsets = char_offsets(text)
        if list(exact_ids) != list(ids):
            raise TokenizationMismatch(f"token ids differ from PaddleNLP's for {text!r}")
    size = max_seq_len - 2
    starts = window_starts(len(ids), size, stride)[: max_windows or None]
    rows, index = [], []
    for start in starts:
        end = min(start + size, len(ids))
        rows.append([tokenizer.cls_token_id] + ids[start:end] + [tokenizer.sep_token_id])
        index.append([-1] + list(range(start, end)) + [-1])
    token_index = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for w, row in enumerate(index):
        token_index[w, : len(row)] = row
    return _pad(rows, tokenizer.pad_token_id), token_index, np.array(offsets, dtype=np.int64).reshape(-1, 2)


def reference_entities(source: ModelSource, texts: list[str], max_seq_len: int,
                       settings: TokenClsSettings, char_offsets=None) -> list[list[Entity]]:
    """token_cls: entities of each text by the source model over PaddleNLP-tokenized windows."""
    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.TOKEN_CLS, tokenizer.pad_token_id)
    results = []
    for text in texts:
        ids, token_index, offsets = _windows_of(tokenizer, text, max_seq_len, settings.window_stride,
                                                char_offsets=char_offsets)
        (logits,) = run(ids, np.zeros_like(ids))
        probabilities = merge_windows(token_index, softmax(logits.astype(np.float32)), len(offsets))
        results.append(decode_entities(text, probabilities, offsets, settings))
    return results


def reference_intent_slot(source: ModelSource, texts: list[str], max_seq_len: int, settings: TokenClsSettings,
                          intents: tuple[str, ...], char_offsets=None) -> list[dict]:
    """intent_slot: intent, confidence and slots by the source program, text cut to one window."""
    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.INTENT_SLOT, tokenizer.pad_token_id)
    results = []
    for text in texts:
        ids, token_index, offsets = _windows_of(tokenizer, text, max_seq_len, 0, max_windows=1,
                                                char_offsets=char_offsets)
        outputs = run(ids, np.zeros_like(ids))
        intent_logits = next(o for o in outputs if o.ndim == 2)
        slot_logits = next(o for o in outputs if o.ndim == 3)
        intent = softmax(intent_logits[0].astype(np.float32))
        probabilities = merge_windows(token_index, softmax(slot_logits.astype(np.float32)), len(offsets))
        kept = int(token_index.max()) + 1 if token_index.max() >= 0 else 0
        slots = decode_entities(text, probabilities[:kept], offsets[:kept], settings)
        results.append({"intent": intents[int(intent.argmax())], "confidence": float(intent.max()), "slots": slots})
    return results


class _Rows(list):
    """Rows that also answer column access (`rows["id"]`), as PaddleNLP's QA code expects of a Dataset."""

    def __getitem__(self, key):
        if isinstance(key, str):
            return [row[key] for row in self]
        return super().__getitem__(key)


def reference_answers(source: ModelSource, questions: list[str], contexts: list[str], max_seq_len: int,
                      settings: QASettings) -> list[str]:
    """qa: PaddleNLP features (stride windows) -> source model -> PaddleNLP's compute_prediction."""
    from paddlenlp.metrics.squad import compute_prediction

    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.QA, tokenizer.pad_token_id)
    encoded = tokenizer(questions, contexts, stride=settings.doc_stride, max_length=max_seq_len,
                        truncation="only_second", return_overflowing_tokens=True, return_offsets_mapping=True)
    features, starts, ends = [], [], []
    for i, ids in enumerate(encoded["input_ids"]):
        types = encoded["token_type_ids"][i]
        # As PaddleNLP's QA examples prepare validation features: only context tokens map back.
        offsets = [o if types[k] == 1 and k != len(types) - 1 else None
                   for k, o in enumerate(encoded["offset_mapping"][i])]
        features.append({"example_id": encoded["overflow_to_sample"][i], "offset_mapping": offsets})
        start_logits, end_logits = run(np.array([ids], dtype=np.int64), np.array([types], dtype=np.int64))[:2]
        starts.append(start_logits[0])
        ends.append(end_logits[0])
    examples = _Rows({"id": i, "context": c, "question": q} for i, (q, c) in enumerate(zip(questions, contexts)))
    predictions, _, _ = compute_prediction(examples, features, (starts, ends), False, settings.n_best,
                                           settings.max_answer_len)
    return [predictions[i] for i in range(len(questions))]
