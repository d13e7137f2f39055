"""seq_cls: <name>_tokenizer -> <name>_model -> <name>_postprocess (labels, probabilities)."""
from __future__ import annotations

from serving_core import interface
from serving_core.seq_cls import SeqClsSettings
from serving_core.windows import WindowSettings

from ..plan import RepositoryPlan
from ..triton_config import IOTensor
from .common import PlanInputs, assemble, class_count, outputs_by_rank, tokenizer_and_model


def plan(inputs: PlanInputs) -> RepositoryPlan:
    (logits,) = outputs_by_rank(inputs, {2: 1}, "sequence classifier ([batch, num_labels])")[2]
    labels = inputs.label_sets.get("labels", ())
    width = class_count(inputs, logits, labels, "class")
    labels = labels or tuple(str(i) for i in range(width))
    options = inputs.options
    text_inputs = [IOTensor(interface.TEXT, "TYPE_STRING", (1,))]
    if options.text_pair:
        text_inputs.append(IOTensor(interface.TEXT_PAIR, "TYPE_STRING", (1,)))
    window = WindowSettings(pad_to_max=options.gpu_onnxruntime)
    parts = tokenizer_and_model(inputs, text_inputs, window, [(logits, (width,))])
    outputs = [IOTensor(interface.LABEL, "TYPE_INT64", (1,)),
               IOTensor(interface.CONFIDENCE, "TYPE_FP32", (1,)),
               IOTensor(interface.LABEL_NAME, "TYPE_STRING", (1,)),
               IOTensor(interface.PROBABILITIES, "TYPE_FP32", (width,)),
               IOTensor(interface.SELECTED, "TYPE_BOOL", (width,))]
    return assemble(
        inputs, parts, {logits.name: interface.LOGITS},
        [IOTensor(interface.LOGITS, "TYPE_FP32", (width,))], {interface.LOGITS: interface.LOGITS}, outputs,
        SeqClsSettings(labels, options.multi_label, options.threshold), "postprocess_seq_cls",
        {interface.PARAM_LABELS: list(labels), interface.PARAM_TEXT_PAIR: options.text_pair,
         interface.PARAM_MULTI_LABEL: options.multi_label},
        ensemble_extra_outputs=[IOTensor(interface.TRUNCATED, "TYPE_BOOL", (1,))])
