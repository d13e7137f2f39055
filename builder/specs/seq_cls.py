"""seq_cls: texts (or pairs) -> one label per text, with probabilities; multi-label by threshold."""
from __future__ import annotations

from serving_core import interface
from serving_core.seq_cls import SeqClsSettings
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.windows import WindowSettings

from builder.specs.common import PlanInputs, class_count, ensemble_spec, outputs_by_rank


def plan(inputs: PlanInputs) -> EnsembleSpec:
    (logits,) = outputs_by_rank(inputs, {2: 1}, "sequence classifier ([batch, num_labels])")[2]
    labels = inputs.label_sets.get("labels", ())
    width = class_count(inputs, logits, labels, "class")
    labels = labels or tuple(str(i) for i in range(width))
    options = inputs.options
    text_inputs = [IOTensor(interface.TEXT, "string", (1,))]
    if options.text_pair:
        text_inputs.append(IOTensor(interface.TEXT_PAIR, "string", (1,)))
    # Multi-label: label / confidence are flat over the request (interface.MULTI_LABEL_SEPARATOR).
    per_text = not options.multi_label
    outputs = [IOTensor(interface.LABEL, "int64", () if per_text else (-1,), batched=per_text),
               IOTensor(interface.CONFIDENCE, "float32", () if per_text else (-1,), batched=per_text),
               IOTensor(interface.LABEL_NAME, "string", ()),
               IOTensor(interface.PROBABILITIES, "float32", (width,)),
               IOTensor(interface.SELECTED, "bool", (width,))]
    return ensemble_spec(inputs, text_inputs, WindowSettings(pad_to_max=options.gpu_onnxruntime),
                         [(logits, (width,), interface.LOGITS)], [IOTensor(interface.LOGITS, "float32", (width,))],
                         outputs, SeqClsSettings(labels, options.multi_label, options.threshold))
