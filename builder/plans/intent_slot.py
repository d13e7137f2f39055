"""intent_slot (ERNIE 3.0 Tiny JointErnie): one encoder, an intent head and a slot head.

The program may take `input_ids` alone (int32 in the seed's export) and has two outputs:
intent logits [batch, num_intents] and slot logits [batch, seq_len, num_slots], told
apart by rank. Text is cut to max_seq_len (one window) and flagged, as the seed does.
"""
from __future__ import annotations

from serving_core import interface
from serving_core.intent_slot import IntentSlotSettings
from serving_core.token_cls import detect_scheme
from serving_core.windows import TokenizerMode, WindowSettings

from ..plan import RepositoryPlan
from ..triton_config import IOTensor
from .common import PlanInputs, assemble, class_count, outputs_by_rank, span_outputs, tokenizer_and_model


def plan(inputs: PlanInputs) -> RepositoryPlan:
    grouped = outputs_by_rank(inputs, {2: 1, 3: 1}, "joint intent + slot model")
    (intent,), (slots,) = grouped[2], grouped[3]
    intents, slot_tags = inputs.label_sets.get("intent", ()), inputs.label_sets.get("slot", ())
    if not intents or not slot_tags:
        raise inputs.fail("intent_slot needs intent_label.txt and slot_label.txt beside the model "
                          "(or --labels and --slot-labels)")
    intent_width = class_count(inputs, intent, intents, "intent")
    slot_width = class_count(inputs, slots, slot_tags, "slot")
    scheme = inputs.options.tag_scheme or detect_scheme(slot_tags).value
    text = IOTensor(interface.TEXT, "TYPE_STRING", (1,))
    window = WindowSettings(TokenizerMode.WINDOWS.value, 0, max_windows=1)
    parts = tokenizer_and_model(inputs, [text], window, [(intent, (-1, intent_width)),
                                                         (slots, (-1, -1, slot_width))])
    post_inputs = [IOTensor(interface.LOGITS, "TYPE_FP32", (-1, intent_width)),
                   IOTensor(interface.SLOT_LOGITS, "TYPE_FP32", (-1, -1, slot_width)),
                   IOTensor(interface.TOKEN_INDEX, "TYPE_INT32", (-1, -1)),
                   IOTensor(interface.OFFSETS, "TYPE_INT32", (-1, 2)), text]
    outputs = [IOTensor(interface.INTENT, "TYPE_STRING", (1,)), IOTensor(interface.INTENT_ID, "TYPE_INT64", (1,)),
               IOTensor(interface.CONFIDENCE, "TYPE_FP32", (1,)), *span_outputs(interface.SLOT_PREFIX)]
    return assemble(
        inputs, parts, {intent.name: interface.LOGITS, slots.name: interface.SLOT_LOGITS}, post_inputs,
        {t.name: t.name for t in post_inputs}, outputs, IntentSlotSettings(intents, slot_tags, scheme),
        "postprocess_intent_slot",
        {interface.PARAM_LABELS: list(intents), interface.PARAM_SLOT_LABELS: list(slot_tags),
         interface.PARAM_SCHEME: scheme},
        ensemble_extra_outputs=[IOTensor(interface.TRUNCATED, "TYPE_BOOL", (1,))])
