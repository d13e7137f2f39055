"""token_cls: windows over long text -> per-token tags -> entities with character offsets."""
from __future__ import annotations

from serving_core import interface
from serving_core.token_cls import TokenClsSettings, detect_scheme
from serving_core.windows import TokenizerMode, WindowSettings

from ..plan import RepositoryPlan
from ..triton_config import IOTensor
from .common import PlanInputs, assemble, class_count, outputs_by_rank, span_outputs, tokenizer_and_model


def plan(inputs: PlanInputs) -> RepositoryPlan:
    (logits,) = outputs_by_rank(inputs, {3: 1}, "token classifier ([batch, seq_len, num_labels])")[3]
    labels = inputs.label_sets.get("labels", ())
    if not labels:
        raise inputs.fail("token_cls needs its tag names (B-PER, I-PER, O...): pass --labels or add label.txt")
    width = class_count(inputs, logits, labels, "tag")
    options = inputs.options
    scheme = options.tag_scheme or detect_scheme(labels).value
    # Default: windows half overlapping (every token has at least a quarter window of context).
    stride = options.window_stride if options.window_stride is not None else (inputs.tokenizer.max_seq_len - 2) // 2
    text = IOTensor(interface.TEXT, "TYPE_STRING", (1,))
    parts = tokenizer_and_model(inputs, [text], WindowSettings(TokenizerMode.WINDOWS.value, stride,
                                                                     options.max_windows),
                                [(logits, (-1, -1, width))])
    post_inputs = [IOTensor(interface.LOGITS, "TYPE_FP32", (-1, -1, width)),
                   IOTensor(interface.TOKEN_INDEX, "TYPE_INT32", (-1, -1)),
                   IOTensor(interface.OFFSETS, "TYPE_INT32", (-1, 2)), text]
    return assemble(
        inputs, parts, {logits.name: interface.LOGITS}, post_inputs,
        {t.name: t.name for t in post_inputs}, span_outputs(interface.ENTITY_PREFIX),
        TokenClsSettings(labels, scheme, stride), "postprocess_token_cls",
        {interface.PARAM_LABELS: list(labels), interface.PARAM_SCHEME: scheme},
        ensemble_extra_outputs=[IOTensor(interface.TRUNCATED, "TYPE_BOOL", (1,))])
