"""Postprocess step for intent_slot: intent (softmax + argmax) and slots with offsets."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from triton_helpers import (StepModel, per_text_rows, responses_from_columns, text_of,  # noqa: E402
                            truncated_flags)

from serving_core import interface  # noqa: E402
from serving_core.intent_slot import IntentSlotSettings  # noqa: E402
from serving_core.seq_cls import SeqClsSettings, decode  # noqa: E402
from serving_core.token_cls import TokenClsSettings, pack_spans, token_entities  # noqa: E402

INPUTS = [interface.LOGITS, interface.SLOT_LOGITS, interface.TOKEN_INDEX, interface.OFFSETS, interface.TEXT,
          interface.TEXT_TRUNCATED]


class TritonPythonModel(StepModel):
    STEP = "postprocess"

    def setup(self):
        settings = self.read_settings(IntentSlotSettings)
        self.intents = SeqClsSettings(settings.intents)
        self.slots = TokenClsSettings(settings.slots, settings.scheme)
        self.intent_names = np.array([n.encode("utf-8") for n in settings.intents], dtype=np.object_)

    def answer(self, requests):
        sizes, rows = per_text_rows(requests, INPUTS)
        intent = decode(np.stack([logits[0] for logits in rows[interface.LOGITS]]), self.intents)
        slots = [token_entities(text_of(text[0]), logits, index, offsets, self.slots)
                 for logits, index, offsets, text in zip(*(rows[n] for n in INPUTS[1:5]))]
        columns = pack_spans(slots, interface.SLOT_PREFIX)
        columns[interface.INTENT] = self.intent_names[intent.label]
        columns[interface.INTENT_ID] = intent.label
        columns[interface.CONFIDENCE] = intent.confidence
        columns[interface.TRUNCATED] = truncated_flags(rows)
        return responses_from_columns(sizes, columns, self.dtypes)
