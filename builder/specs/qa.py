"""qa: QUESTION + CONTEXT -> windows over the context -> the best answer span over all windows.

Fan-out design: the tokenizer step turns each (question, context) into a padded [W, L]
window tensor, so one ensemble request stays one request at every step and the model
step's dynamic batcher still joins windows of concurrent requests into one batch. A BLS
model (pb_utils.InferenceRequest per window) would add a round trip per window and
serialize the fan-out inside one Python process for no batching gain.
"""
from __future__ import annotations

from serving_core import interface
from serving_core.qa import QASettings
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.windows import TokenizerMode, WindowSettings

from builder.specs.common import PlanInputs, ensemble_spec, outputs_by_rank


def plan(inputs: PlanInputs) -> EnsembleSpec:
    start, end = outputs_by_rank(inputs, {2: 2}, "QA model (start and end logits, [batch, seq_len] each)")[2]
    options = inputs.options
    max_len = inputs.tokenizer.max_seq_len
    window = WindowSettings(TokenizerMode.QA.value,
                            options.stride if options.stride is not None else max_len // 4,
                            options.max_windows, min(options.max_question_len, max_len // 2))
    question = IOTensor(interface.QUESTION, "string", (1,))
    context = IOTensor(interface.CONTEXT, "string", (1,))
    post_inputs = [IOTensor(interface.START_LOGITS, "float32", (-1, -1)),
                   IOTensor(interface.END_LOGITS, "float32", (-1, -1)),
                   IOTensor(interface.TOKEN_INDEX, "int32", (-1, -1)),
                   IOTensor(interface.OFFSETS, "int32", (-1, 2)), context]
    outputs = [IOTensor(interface.ANSWER, "string", ()), IOTensor(interface.ANSWER_START, "int32", ()),
               IOTensor(interface.ANSWER_END, "int32", ()), IOTensor(interface.SCORE, "float32", ()),
               IOTensor(interface.PROBABILITY, "float32", ())]
    return ensemble_spec(inputs, [question, context], window,
                         [(start, (-1, -1), interface.START_LOGITS), (end, (-1, -1), interface.END_LOGITS)],
                         post_inputs, outputs,
                         QASettings(options.max_answer_len, options.n_best, options.no_answer_threshold))
