"""The source model run the PaddleNLP way: PaddleNLP's own tokenizer, then the model.

Independent of the serving path in tokenization (PaddleNLP's tokenizer, not our Rust one), in
the model (PaddleNLP's dygraph model, or the source program on Paddle Inference's native kernels) and, for every
text that fits one window, in decoding: seq_cls probabilities by Paddle's softmax/sigmoid, qa
by PaddleNLP's `compute_prediction`, entities and slots by seqeval's `get_entities` (what
PaddleNLP's ChunkEvaluator uses). Two things are shared with the serving path: character
offsets come from the serving tokenizer's exact mapping of the same token ids (PaddleNLP's
Python mapping is wrong on [UNK] words), and a token_cls text longer than one window is
merged with the serving code's `window_starts` / `merge_windows` / `decode_entities`
(tests/test_decoding.py and tests/test_tokenizer_parity.py check those on their own).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from serving_core.interface import Task
from serving_core.qa import QASettings
from serving_core.program import ProgramFormat
from serving_core.runtime import OnnxRunner, PaddleRunner
from serving_core.token_cls import Entity, TokenClsSettings, decode_entities
from serving_core.tokenization import feeds_from_ids
from serving_core.windows import merge_windows, window_starts

from builder.source.export import load_dygraph_model
from builder.source.detect import ModelSource, SourceKind
from builder.source.program_probe import probe_program


def paddlenlp_tokenizer(source: ModelSource):
    """PaddleNLP's tokenizer as save_pretrained left it, or its ErnieTokenizer on a bare vocab.txt;
    for a tokenizer.json (sentence-transformers), PaddleNLP's BertTokenizerFast, which runs it."""
    from paddlenlp.transformers import AutoTokenizer, ErnieTokenizer

    if source.vocab_file.suffix == ".json":
        from paddlenlp.transformers.bert.tokenizer_fast import BertTokenizerFast

        return BertTokenizerFast.from_pretrained(str(source.tokenizer_dir))

    if not (source.tokenizer_dir / "tokenizer_config.json").is_file():
        from serving_core.tokenization import settings_from_tokenizer_config

        settings = settings_from_tokenizer_config(source.tokenizer_dir, 8)
        return ErnieTokenizer(str(source.vocab_file), do_lower_case=settings.do_lower_case)
    return AutoTokenizer.from_pretrained(str(source.tokenizer_dir))


# Sources with weights PaddleNLP loads (a sentence-transformers encoder as PaddleNLP's BertModel).
DYGRAPH_KINDS = (SourceKind.CHECKPOINT, SourceKind.MINDSPORE, SourceKind.SENTENCE_TRANSFORMERS)


class SourceModel:
    """The source model, fed as the exported program is (arrays by input name), outputs in order.

    A checkpoint (or a converted MindSpore student) runs as PaddleNLP's dygraph model; a static
    program on Paddle Inference's native CPU kernels (oneDNN off: oneDNN, Paddle's default,
    miscomputes some graphs), an ONNX program on ONNX Runtime. The build proves each engine it
    serves against this, and `verify` compares the server with it.
    """

    def __init__(self, source: ModelSource, task: Task, pooling: str = "cls"):
        self.dygraph = source.kind in DYGRAPH_KINDS
        if self.dygraph:
            self._model = load_dygraph_model(source, task, pooling)
            self.input_names = ["input_ids", "token_type_ids"]
            self.description = "PaddleNLP's dygraph model"
            return
        if source.program.format is ProgramFormat.ONNX:
            self._runner = OnnxRunner(source.program)
            self.description = "the ONNX program on ONNX Runtime"
        else:
            probe_program(source.program)  # a program Paddle's loader would crash on is refused first
            self._runner = PaddleRunner(source.program, onednn=False)
            self.description = "the program on Paddle Inference's native CPU kernels"
        self.input_names = [t.name for t in self._runner.signature.inputs]
        self._dtypes = {t.name: t.dtype for t in self._runner.signature.inputs}
        self._outputs = [t.name for t in self._runner.signature.outputs]

    @property
    def dygraph_model(self):
        """PaddleNLP's model object (None for a program), for an export that reuses it."""
        return self._model if self.dygraph else None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.dygraph:
            import paddle

            with paddle.no_grad():
                out = self._model(paddle.to_tensor(feeds["input_ids"].astype(np.int64)),
                                  token_type_ids=paddle.to_tensor(feeds["token_type_ids"].astype(np.int64)))
            return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
        result = self._runner.run({name: feeds[name].astype(self._dtypes[name]) for name in self.input_names})
        return [result[name] for name in self._outputs]


def model_function(source: ModelSource, task: Task, pad_id: int = 0,
                   pooling: str = "cls") -> Callable[[np.ndarray, np.ndarray], list[np.ndarray]]:
    """(input_ids, token_type_ids) int64 -> the source model's outputs, in order (a program's
    other inputs, attention_mask and position_ids, are made from the ids)."""
    model = SourceModel(source, task, pooling)

    def run(ids, types):
        return model.run(feeds_from_ids(model.input_names, ids, types, pad_id))
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


def reference_window_probabilities(source: ModelSource, texts: list[str], max_seq_len: int, stride: int,
                                   max_windows: int, multi_label: bool, aggregate: str) -> tuple[np.ndarray, list[int]]:
    """seq_cls --long-text windows: [N, C] probabilities of the source model over each text's
    PaddleNLP-tokenized windows (mean: of the mean logits; max: each class's highest), and the
    windows read per text."""
    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.SEQ_CLS, tokenizer.pad_token_id)
    rows, counts = [], []
    for text in texts:
        ids, _, _ = _windows_of(tokenizer, text, max_seq_len, stride, max_windows)
        (logits,) = run(ids, np.zeros_like(ids))
        if aggregate == "max":
            rows.append(reference_probabilities(logits, multi_label).max(axis=0))
        else:
            rows.append(reference_probabilities(logits.mean(axis=0, keepdims=True), multi_label)[0])
        counts.append(len(ids))
    return np.stack(rows).astype(np.float32), counts


def reference_embeddings(source: ModelSource, texts: list[str], max_seq_len: int, settings,
                         stride: int = 0, max_windows: int = 0) -> tuple[np.ndarray, list[int]]:
    """embedding: [N, dim] vectors of the source model (PaddleNLP's encoder with the pooling on
    top) and the windows read per text: one window cut to max_seq_len, or (`settings.aggregate`)
    the mean of the text's PaddleNLP-tokenized windows; normalised by Paddle's F.normalize."""
    import paddle

    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.EMBEDDING, tokenizer.pad_token_id, settings.pooling)
    rows, counts = [], []
    for text in texts:
        if settings.aggregate:
            ids, _, _ = _windows_of(tokenizer, text, max_seq_len, stride, max_windows)
        else:
            ids = np.array([tokenizer(text, max_length=max_seq_len, truncation=True)["input_ids"]], dtype=np.int64)
        (vectors,) = run(ids, np.zeros_like(ids))
        rows.append(vectors.astype(np.float32).mean(axis=0))
        counts.append(len(ids))
    vectors = paddle.to_tensor(np.stack(rows))
    if settings.normalize:
        vectors = paddle.nn.functional.normalize(vectors, axis=-1)
    return vectors.numpy().astype(np.float32), counts


def reference_probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Paddle's sigmoid (multi-label) or softmax over the last axis."""
    import paddle

    tensor = paddle.to_tensor(logits.astype(np.float32))
    return (paddle.nn.functional.sigmoid(tensor) if multi_label else paddle.nn.functional.softmax(tensor)).numpy()


@dataclass(frozen=True)
class ReferenceSpans:
    """A text's entities by the source model, with each token's character offsets and the gap
    between its two most probable tags (a gap near 0 is a tie: either tag is a right answer)."""

    entities: list[Entity]
    offsets: np.ndarray  # [T, 2]
    margins: np.ndarray  # [T]

    def tied_within(self, start: int, end: int, tolerance: float) -> bool:
        """Whether a token overlapping characters [start, end) sits on a tie."""
        overlap = (self.offsets[:, 0] < end) & (self.offsets[:, 1] > start)
        return bool((self.margins[overlap] <= tolerance).any())


def _margins(probabilities: np.ndarray) -> np.ndarray:
    if probabilities.shape[-1] < 2 or not len(probabilities):
        return np.ones(len(probabilities))
    top = np.sort(probabilities, axis=-1)
    return top[:, -1] - top[:, -2]


def seqeval_entities(text: str, probabilities: np.ndarray, offsets: np.ndarray,
                     labels: tuple[str, ...]) -> list[Entity]:
    """Entities by seqeval's `get_entities` over the argmax tags ([T, C] probabilities of the
    text's tokens, [T, 2] character offsets). Tags are spelled as seqeval parses them: `_` as
    `-`, and a tag without a prefix (IO scheme) as `I-tag`."""
    from seqeval.metrics.sequence_labeling import get_entities

    def seqeval_tag(tag: str) -> str:
        if tag == "O":
            return tag
        prefix, sep, kind = tag.replace("_", "-", 1).partition("-")
        return f"{prefix.upper()}-{kind}" if sep and prefix.upper() in ("B", "I", "E", "S") else f"I-{tag}"

    best = probabilities.argmax(axis=-1)
    tags = [seqeval_tag(labels[i]) for i in best]
    entities = []
    for kind, first, last in get_entities(tags):
        start, end = int(offsets[first][0]), int(offsets[last][1])
        score = float(probabilities[np.arange(first, last + 1), best[first:last + 1]].mean())
        entities.append(Entity(kind, text[start:end], start, end, score))
    return entities


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


def reference_entities(source: ModelSource, texts: list[str], max_seq_len: int, stride: int,
                       settings: TokenClsSettings, char_offsets=None) -> list[ReferenceSpans]:
    """token_cls: entities of each text by the source model over PaddleNLP-tokenized windows;
    seqeval decodes a text that fits one window, the serving merge a longer one."""
    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.TOKEN_CLS, tokenizer.pad_token_id)
    results = []
    for text in texts:
        ids, token_index, offsets = _windows_of(tokenizer, text, max_seq_len, stride, char_offsets=char_offsets)
        (logits,) = run(ids, np.zeros_like(ids))
        probabilities = reference_probabilities(logits, multi_label=False)
        if len(ids) == 1:
            per_token = probabilities[0][token_index[0] >= 0]
            found = seqeval_entities(text, per_token, offsets, settings.labels)
        else:
            per_token = merge_windows(token_index, probabilities, len(offsets))
            found = decode_entities(text, per_token, offsets, settings)
        results.append(ReferenceSpans(found, offsets, _margins(per_token)))
    return results


def reference_intent_slot(source: ModelSource, texts: list[str], max_seq_len: int, slots: tuple[str, ...],
                          intents: tuple[str, ...], char_offsets=None) -> list[dict]:
    """intent_slot: intent, confidence and slots (seqeval) by the source program, text cut to one window."""
    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.INTENT_SLOT, tokenizer.pad_token_id)
    results = []
    for text in texts:
        ids, token_index, offsets = _windows_of(tokenizer, text, max_seq_len, 0, max_windows=1,
                                                char_offsets=char_offsets)
        outputs = run(ids, np.zeros_like(ids))
        intent_logits = next(o for o in outputs if o.ndim == 2)
        slot_logits = next(o for o in outputs if o.ndim == 3)
        intent = reference_probabilities(intent_logits[0], multi_label=False)
        tokens = token_index[0] >= 0
        probabilities = reference_probabilities(slot_logits, multi_label=False)[0][tokens]
        kept = offsets[: int(tokens.sum())]
        found = ReferenceSpans(seqeval_entities(text, probabilities, kept, slots), kept, _margins(probabilities))
        results.append({"intent": intents[int(intent.argmax())], "confidence": float(intent.max()),
                        "intent_margin": float(_margins(intent[None])[0]), "slots": found})
    return results


class _Rows(list):
    """Rows that also answer column access (`rows["id"]`), as PaddleNLP's QA code expects of a Dataset."""

    def __getitem__(self, key):
        if isinstance(key, str):
            return [row[key] for row in self]
        return super().__getitem__(key)


def reference_answers(source: ModelSource, questions: list[str], contexts: list[str], max_seq_len: int,
                      stride: int, settings: QASettings) -> list[str]:
    """qa: PaddleNLP features (stride windows) -> source model -> PaddleNLP's compute_prediction."""
    from paddlenlp.metrics.squad import compute_prediction

    tokenizer = paddlenlp_tokenizer(source)
    run = model_function(source, Task.QA, tokenizer.pad_token_id)
    encoded = tokenizer(questions, contexts, stride=stride, max_length=max_seq_len,
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
