"""seq_cls: texts (or pairs) -> one label per text, with probabilities; multi-label by threshold.

A text longer than max_seq_len is cut and flagged (`--long-text truncate`), or read whole in
strided windows whose answers make one (`--long-text windows`: serving_core.seq_cls.decode_windows).
"""
from __future__ import annotations

from serving_core import interface
from serving_core.seq_cls import SeqClsSettings, default_aggregate
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.windows import TokenizerMode, WindowSettings

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
    if options.long_text == "windows":
        return _windowed(inputs, logits, width, text_inputs, outputs, labels)
    return ensemble_spec(inputs, text_inputs, WindowSettings(pad_to_max=options.gpu_onnxruntime),
                         [(logits, (width,), interface.LOGITS)], [IOTensor(interface.LOGITS, "float32", (width,))],
                         outputs, SeqClsSettings(labels, options.multi_label, options.threshold))


def default_stride(max_seq_len: int) -> int:
    """Windows overlapping by a quarter: every token is read with some context on both sides."""
    return max(1, (max_seq_len - 2) * 3 // 4)


def _windowed(inputs: PlanInputs, logits, width: int, text_inputs: list[IOTensor], outputs: list[IOTensor],
              labels: tuple[str, ...]) -> EnsembleSpec:
    options = inputs.options  # (what windows cannot combine with is refused by check_runtime_options)
    stride = options.stride if options.stride is not None else default_stride(inputs.tokenizer.max_seq_len)
    aggregate = options.long_text_aggregate or default_aggregate(options.multi_label)
    window = WindowSettings(TokenizerMode.WINDOWS.value, stride, options.max_windows)
    post_inputs = [IOTensor(interface.LOGITS, "float32", (-1, width)), IOTensor(interface.TEXT_WINDOWS, "int32", (1,))]
    return ensemble_spec(inputs, text_inputs, window, [(logits, (-1, width), interface.LOGITS)], post_inputs,
                         [*outputs, IOTensor(interface.WINDOWS, "int32", ())],
                         SeqClsSettings(labels, options.multi_label, options.threshold, aggregate), per_token=False)
