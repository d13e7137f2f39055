"""Postprocess step for token_cls: window logits -> entities with character offsets.

Each token's tag comes from the window where it has the most context; entities are
returned as typed tensors (entity_label/text/start/end/score + entity_count), `end`
exclusive, offsets into the original text.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from triton_helpers import StepModel, per_text_rows, responses_from_columns, text_of  # noqa: E402

from serving_core import interface  # noqa: E402
from serving_core.token_cls import TokenClsSettings, pack_spans, token_entities  # noqa: E402

INPUTS = [interface.LOGITS, interface.TOKEN_INDEX, interface.OFFSETS, interface.TEXT]


class TritonPythonModel(StepModel):
    STEP = "postprocess"

    def setup(self):
        self.settings = self.read_settings(TokenClsSettings)

    def answer(self, requests):
        sizes, rows = per_text_rows(requests, INPUTS)
        entities = [token_entities(text_of(text[0]), logits, index, offsets, self.settings)
                    for logits, index, offsets, text in zip(*(rows[name] for name in INPUTS))]
        columns = pack_spans(entities, interface.ENTITY_PREFIX)
        return responses_from_columns(sizes, columns, self.dtypes)
