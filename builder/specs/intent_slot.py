"""intent_slot (ERNIE 3.0 Tiny JointErnie): one encoder, an intent head and a slot head.

The program may take `input_ids` alone (int32 in the seed's export) and has two outputs:
intent logits [batch, num_intents] and slot logits [batch, seq_len, num_slots], told
apart by rank. Text is cut to max_seq_len (one window) and flagged, as the seed does.
"""
from __future__ import annotations

from serving_core import interface
from serving_core.intent_slot import IntentSlotSettings
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.token_cls import detect_scheme
from serving_core.windows import TokenizerMode, WindowSettings

from builder.specs.common import PlanInputs, class_count, ensemble_spec, outputs_by_rank, span_outputs


def plan(inputs: PlanInputs) -> EnsembleSpec:
    grouped = outputs_by_rank(inputs, {2: 1, 3: 1}, "joint intent + slot model")
    (intent,), (slots,) = grouped[2], grouped[3]
    intents, slot_tags = inputs.label_sets.get("intent", ()), inputs.label_sets.get("slot", ())
    if not intents or not slot_tags:
        raise inputs.fail("intent_slot needs intent_label.txt and slot_label.txt beside the model "
                          "(or --labels and --slot-labels)")
    intent_width = class_count(inputs, intent, intents, "intent")
    slot_width = class_count(inputs, slots, slot_tags, "slot")
    scheme = inputs.options.tag_scheme or detect_scheme(slot_tags).value
    text = IOTensor(interface.TEXT, "string", (1,))
    post_inputs = [IOTensor(interface.LOGITS, "float32", (-1, intent_width)),
                   IOTensor(interface.SLOT_LOGITS, "float32", (-1, -1, slot_width)),
                   IOTensor(interface.TOKEN_INDEX, "int32", (-1, -1)),
                   IOTensor(interface.OFFSETS, "int32", (-1, 2)), text]
    outputs = [IOTensor(interface.INTENT, "string", ()), IOTensor(interface.INTENT_ID, "int64", ()),
               IOTensor(interface.CONFIDENCE, "float32", ()), *span_outputs(interface.SLOT_PREFIX)]
    return ensemble_spec(inputs, [text], WindowSettings(TokenizerMode.WINDOWS.value, 0, max_windows=1),
                         [(intent, (-1, intent_width), interface.LOGITS),
                          (slots, (-1, -1, slot_width), interface.SLOT_LOGITS)],
                         post_inputs, outputs, IntentSlotSettings(intents, slot_tags, scheme))
