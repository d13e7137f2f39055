"""Postprocess step for seq_cls: logits -> label, confidence, label_name, probabilities."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from triton_helpers import StepModel, input_array, responses_from_columns  # noqa: E402

from serving_core import interface  # noqa: E402
from serving_core.errors import InvalidRequest  # noqa: E402
from serving_core.feed_checks import check_finite  # noqa: E402
from serving_core.seq_cls import SeqClsSettings, decode  # noqa: E402


class TritonPythonModel(StepModel):
    STEP = "postprocess"

    def setup(self):
        self.settings = self.read_settings(SeqClsSettings)
        self.label_names = np.array([n.encode("utf-8") for n in self.settings.labels], dtype=np.object_)

    def answer(self, requests):
        logits = [input_array(r, interface.LOGITS) for r in requests]
        for array in logits:
            if array is None:
                raise InvalidRequest(f"input {interface.LOGITS!r} is missing")
            check_finite({interface.LOGITS: array})
        sizes = [len(x) for x in logits]
        result = decode(np.concatenate(logits, axis=0), self.settings)
        columns = {
            interface.LABEL: result.label.reshape(-1, 1),
            interface.CONFIDENCE: result.confidence.reshape(-1, 1),
            interface.LABEL_NAME: self.label_names[result.label].reshape(-1, 1),
            interface.PROBABILITIES: result.probabilities,
            interface.SELECTED: result.selected,
        }
        return responses_from_columns(sizes, columns, self.dtypes)
