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
from serving_core.windows import TokenizerMode, WindowSettings

from ..plan import RepositoryPlan
from ..triton_config import IOTensor
from .common import PlanInputs, assemble, outputs_by_rank, tokenizer_and_model


def plan(inputs: PlanInputs) -> RepositoryPlan:
    start, end = outputs_by_rank(inputs, {2: 2}, "QA model (start and end logits, [batch, seq_len] each)")[2]
    options = inputs.options
    max_len = inputs.tokenizer.max_seq_len
    settings = QASettings(doc_stride=options.window_stride if options.window_stride is not None else max_len // 4,
                          max_question_len=min(options.max_question_len, max_len // 2),
                          max_answer_len=options.max_answer_len, n_best=options.n_best,
                          no_answer_threshold=options.no_answer_threshold)
    question = IOTensor(interface.QUESTION, "TYPE_STRING", (1,))
    context = IOTensor(interface.CONTEXT, "TYPE_STRING", (1,))
    window = WindowSettings(TokenizerMode.QA.value, settings.doc_stride, options.max_windows,
                            settings.max_question_len)
    parts = tokenizer_and_model(inputs, [question, context], window, [(start, (-1, -1)), (end, (-1, -1))])
    post_inputs = [IOTensor(interface.START_LOGITS, "TYPE_FP32", (-1, -1)),
                   IOTensor(interface.END_LOGITS, "TYPE_FP32", (-1, -1)),
                   IOTensor(interface.TOKEN_INDEX, "TYPE_INT32", (-1, -1)),
                   IOTensor(interface.OFFSETS, "TYPE_INT32", (-1, 2)), context]
    outputs = [IOTensor(interface.ANSWER, "TYPE_STRING", (1,)), IOTensor(interface.ANSWER_START, "TYPE_INT32", (1,)),
               IOTensor(interface.ANSWER_END, "TYPE_INT32", (1,)), IOTensor(interface.SCORE, "TYPE_FP32", (1,)),
               IOTensor(interface.PROBABILITY, "TYPE_FP32", (1,))]
    return assemble(
        inputs, parts, {start.name: interface.START_LOGITS, end.name: interface.END_LOGITS}, post_inputs,
        {t.name: t.name for t in post_inputs}, outputs, settings, "postprocess_qa",
        {"doc_stride": settings.doc_stride, "max_answer_len": settings.max_answer_len},
        ensemble_extra_outputs=[IOTensor(interface.TRUNCATED, "TYPE_BOOL", (1,))])
