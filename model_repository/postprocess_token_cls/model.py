"""Postprocess step for token_cls: window logits -> entities with character offsets.

Each token's tag comes from the window where it has the most context; entities are
returned as typed tensors (entity_label/text/start/end/score + entity_count), `end`
exclusive, offsets into the original text, and as `OUTPUT`, one string per text in the
published clients' format (serving_core.token_cls.published_entities).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from triton_helpers import (StepModel, per_text_rows, responses_from_columns, text_of,  # noqa: E402
                            truncated_flags)

from serving_core import interface  # noqa: E402
from serving_core.published import published_entities  # noqa: E402
from serving_core.token_cls import TokenClsSettings, pack_spans, token_entities  # noqa: E402

INPUTS = [interface.LOGITS, interface.TOKEN_INDEX, interface.OFFSETS, interface.TEXT, interface.TEXT_TRUNCATED]


class TritonPythonModel(StepModel):
    STEP = "postprocess"

    def setup(self):
        self.settings = self.read_settings(TokenClsSettings)

    def answer(self, requests):
        sizes, rows = per_text_rows(requests, INPUTS)
        entities = [token_entities(text_of(text[0]), logits, index, offsets, self.settings)
                    for logits, index, offsets, text in zip(*(rows[name] for name in INPUTS[:4]))]
        columns = pack_spans(entities, interface.ENTITY_PREFIX)
        columns[interface.OUTPUT] = np.array([published_entities(e).encode("utf-8") for e in entities],
                                             dtype=np.object_)
        columns[interface.TRUNCATED] = truncated_flags(rows)
        return responses_from_columns(sizes, columns, self.dtypes)
