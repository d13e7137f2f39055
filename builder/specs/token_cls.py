"""token_cls: windows over long text -> per-token tags -> entities with character offsets."""
from __future__ import annotations

from serving_core import interface
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.token_cls import TokenClsSettings, detect_scheme
from serving_core.windows import TokenizerMode, WindowSettings

from builder.specs.common import PlanInputs, class_count, ensemble_spec, outputs_by_rank, span_outputs


def plan(inputs: PlanInputs) -> EnsembleSpec:
    (logits,) = outputs_by_rank(inputs, {3: 1}, "token classifier ([batch, seq_len, num_labels])")[3]
    labels = inputs.label_sets.get("labels", ())
    if not labels:
        raise inputs.fail("token_cls needs its tag names (B-PER, I-PER, O...): pass --labels or add label.txt")
    width = class_count(inputs, logits, labels, "tag")
    options = inputs.options
    scheme = options.tag_scheme or detect_scheme(labels).value
    # Default: windows half overlapping (every token has at least a quarter window of context).
    stride = options.stride if options.stride is not None else (inputs.tokenizer.max_seq_len - 2) // 2
    text = IOTensor(interface.TEXT, "string", (1,))
    post_inputs = [IOTensor(interface.LOGITS, "float32", (-1, -1, width)),
                   IOTensor(interface.TOKEN_INDEX, "int32", (-1, -1)),
                   IOTensor(interface.OFFSETS, "int32", (-1, 2)), text]
    return ensemble_spec(inputs, [text], WindowSettings(TokenizerMode.WINDOWS.value, stride, options.max_windows),
                         [(logits, (-1, -1, width), interface.LOGITS)], post_inputs,
                         [*span_outputs(interface.ENTITY_PREFIX), IOTensor(interface.OUTPUT, "string", ())],
                         TokenClsSettings(labels, scheme))
