"""Postprocess step for qa: start/end logits over all windows -> the best answer span."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from triton_helpers import (StepModel, per_text_rows, responses_from_columns, text_of,  # noqa: E402
                            truncated_flags)

from serving_core import interface  # noqa: E402
from serving_core.qa import QASettings, best_answer  # noqa: E402

INPUTS = [interface.START_LOGITS, interface.END_LOGITS, interface.TOKEN_INDEX, interface.OFFSETS, interface.CONTEXT,
          interface.TEXT_TRUNCATED]


class TritonPythonModel(StepModel):
    STEP = "postprocess"

    def setup(self):
        self.settings = self.read_settings(QASettings)

    def answer(self, requests):
        sizes, rows = per_text_rows(requests, INPUTS)
        answers = [best_answer(text_of(context[0]), start, end, index, offsets, self.settings)
                   for start, end, index, offsets, context in zip(*(rows[name] for name in INPUTS[:5]))]
        columns = {
            interface.ANSWER: np.array([a.text.encode("utf-8") for a in answers], dtype=np.object_),
            interface.ANSWER_START: np.array([a.start for a in answers], dtype=np.int32),
            interface.ANSWER_END: np.array([a.end for a in answers], dtype=np.int32),
            interface.SCORE: np.array([a.score for a in answers], dtype=np.float32),
            interface.PROBABILITY: np.array([a.probability for a in answers], dtype=np.float32),
            interface.TRUNCATED: truncated_flags(rows),
        }
        return responses_from_columns(sizes, columns, self.dtypes)
