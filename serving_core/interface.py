"""Public tensor names of a generated ensemble: the contract between server and clients.

Every per-text value is [B] (one per text of the request), as the servers PaddleNLP's and
FastDeploy's published Triton clients were written for return: `label` and `confidence` for
seq_cls (multi-label: the ids and probabilities over the threshold, see MULTI_LABEL_SEPARATOR),
and `OUTPUT` for token_cls. Our typed outputs sit beside them.
"""
from __future__ import annotations

import enum


class Task(str, enum.Enum):
    """A serving task; the value is what users type on the command line."""

    SEQ_CLS = "seq_cls"
    TOKEN_CLS = "token_cls"
    QA = "qa"
    INTENT_SLOT = "intent_slot"
    EMBEDDING = "embedding"

    def __str__(self) -> str:
        return self.value


# Ensemble inputs.
# Paddle Serving request keys per task, in the order of the ensemble's text inputs (a seq_cls
# model takes `text_pair` only when built with --text-pair).
REQUEST_KEYS = {Task.SEQ_CLS: ("text", "text_pair"), Task.TOKEN_CLS: ("text",), Task.INTENT_SLOT: ("text",),
                Task.QA: ("question", "context"), Task.EMBEDDING: ("text",)}

TEXT = "TEXT"
TEXT_PAIR = "TEXT_PAIR"
QUESTION = "QUESTION"
CONTEXT = "CONTEXT"

# Ensemble outputs, seq_cls.
LABEL = "label"
CONFIDENCE = "confidence"
LABEL_NAME = "label_name"
PROBABILITIES = "probabilities"
SELECTED = "selected"  # multi-label: BOOL [num_labels], probability >= threshold
TRUNCATED = "truncated"  # BOOL per text: the text (or pair) was cut
WINDOWS = "windows"  # INT32 per text, --long-text windows: the windows read (their answers aggregated)
# Multi-label `label` / `confidence` are flat: the ids (probabilities) over the threshold, text
# after text, one separator between consecutive texts (-1 / -1.0). One text: exactly its ids.
MULTI_LABEL_SEPARATOR = -1

# token_cls: one string per text, a Python literal list of {"pos": [first, last], "label": kind},
# character offsets with `last` inclusive (the published clients' format; entity_* are exclusive).
OUTPUT = "OUTPUT"

# Spans (token_cls entities, intent_slot slots): one row per text, padded to the most spans
# in the request; `<prefix>_count` says how many are real. Offsets are characters, end exclusive.
SPAN_FIELDS = ("label", "text", "start", "end", "score")
ENTITY_PREFIX = "entity"
SLOT_PREFIX = "slot"

# qa outputs.
ANSWER = "answer"
ANSWER_START = "answer_start"
ANSWER_END = "answer_end"
SCORE = "score"
PROBABILITY = "probability"

# intent_slot outputs.
INTENT = "intent"
INTENT_ID = "intent_id"

# embedding outputs: FP32 [B, dim], the mean of the text's windows' vectors, then L2-normalised
# unless built with --no-normalize.
EMBEDDING = "embedding"

# Internal tensors between the steps.
LOGITS = "logits"
SLOT_LOGITS = "slot_logits"
START_LOGITS = "start_logits"
END_LOGITS = "end_logits"
POOLED = "pooled"  # embedding: the program's pooled vector of each window, before normalisation
TOKEN_INDEX = "token_index"  # [W, L] per text: text token at each window position, -1 elsewhere
OFFSETS = "offsets"  # [T, 2] per text: character offsets of each text token
TEXT_TRUNCATED = "text_truncated"  # [1] per text, from the tokenizer; the postprocess answers it as TRUNCATED
TEXT_WINDOWS = "text_windows"  # [1] per text, from the tokenizer: its windows (seq_cls --long-text windows)
TOKENIZER_EXTRAS = (TEXT_TRUNCATED, TEXT_WINDOWS, TOKEN_INDEX, OFFSETS)

# Ensemble `parameters` keys a client reads to learn how to talk to a model.
PARAM_TASK = "task"
PARAM_MAX_BATCH_SIZE = "max_batch_size"  # texts one request may carry
PARAM_LABELS = "labels"  # JSON array of label names, index = class id
PARAM_TEXT_PAIR = "text_pair"
PARAM_MULTI_LABEL = "multi_label"
PARAM_LONG_TEXT = "long_text"  # seq_cls, embedding: "truncate" or "windows" (the answers then carry WINDOWS)
PARAM_MAX_SEQ_LEN = "max_seq_len"
PARAM_SLOT_LABELS = "slot_labels"
PARAM_SCHEME = "tag_scheme"
PARAM_DIM = "dim"  # embedding: the vector's length
PARAM_POOLING = "pooling"  # embedding: cls, mean or pooler (how a window's tokens make its vector)
PARAM_NORMALIZE = "normalize"  # embedding: whether vectors are L2-normalised
