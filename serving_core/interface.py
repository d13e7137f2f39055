"""Public tensor names of a generated ensemble: the contract between server and clients.

`label` and `confidence` are the names PaddleNLP's and FastDeploy's example Triton
clients read, so their users' clients keep working against our repositories.
"""
from __future__ import annotations

import enum


class Task(str, enum.Enum):
    """A serving task; the value is what users type on the command line."""

    SEQ_CLS = "seq_cls"

    def __str__(self) -> str:
        return self.value


# Ensemble inputs.
TEXT = "TEXT"
TEXT_PAIR = "TEXT_PAIR"

# Ensemble outputs, seq_cls.
LABEL = "label"
CONFIDENCE = "confidence"
LABEL_NAME = "label_name"
PROBABILITIES = "probabilities"
SELECTED = "selected"  # multi-label: BOOL [num_labels], probability >= threshold
TRUNCATED = "truncated"  # BOOL [1]: the text (or pair) was cut to max_seq_len

# Internal tensor between the model step and the postprocess step.
LOGITS = "logits"

# Ensemble `parameters` keys a client reads to learn how to talk to a model.
PARAM_TASK = "task"
PARAM_LABELS = "labels"  # JSON array of label names, index = class id
PARAM_TEXT_PAIR = "text_pair"
PARAM_MULTI_LABEL = "multi_label"
PARAM_MAX_SEQ_LEN = "max_seq_len"
