"""Postprocess step for seq_cls: logits -> label, confidence, label_name, probabilities, selected.

One value per text is [B]. Multi-label `label` / `confidence` hold the decisions over the
threshold, flat over the request (serving_core.interface.MULTI_LABEL_SEPARATOR). Built with
`--long-text windows`, each text's logits are [W, C] over its windows (the tokenizer says how
many are real): they make one answer by the settings' `aggregate`, and `windows` says how many.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from triton_helpers import (StepModel, output_tensor, per_text_rows, responses_from_columns,  # noqa: E402
                            truncated_flags)

from serving_core import interface  # noqa: E402
from serving_core.seq_cls import SeqClsSettings, decode, decode_windows, flat_decisions  # noqa: E402

INPUTS = [interface.LOGITS, interface.TEXT_TRUNCATED]


class TritonPythonModel(StepModel):
    STEP = "postprocess"

    def setup(self):
        self.settings = self.read_settings(SeqClsSettings)
        self.label_names = np.array([n.encode("utf-8") for n in self.settings.labels], dtype=np.object_)
        self.windowed = interface.TEXT_WINDOWS in [i["name"] for i in self.config["input"]]

    def answer(self, requests):
        sizes, rows = per_text_rows(requests, INPUTS + ([interface.TEXT_WINDOWS] if self.windowed else []))
        if self.windowed:
            counts = np.array([int(count[0]) for count in rows[interface.TEXT_WINDOWS]], dtype=np.int32)
            result = decode_windows([logits[:count] for logits, count in zip(rows[interface.LOGITS], counts)],
                                    self.settings)
        else:
            result = decode(np.stack(rows[interface.LOGITS]), self.settings)
        columns = {
            interface.LABEL: result.label,
            interface.CONFIDENCE: result.confidence,
            interface.LABEL_NAME: self.label_names[result.label],
            interface.PROBABILITIES: result.probabilities,
            interface.SELECTED: result.selected,
            interface.TRUNCATED: truncated_flags(rows),
        }
        if self.windowed:
            columns[interface.WINDOWS] = counts
        if not self.settings.multi_label:
            return responses_from_columns(sizes, columns, self.dtypes)
        responses, row = [], 0
        for size in sizes:  # multi-label label / confidence are flat over each request
            per_request = {name: array[row: row + size] for name, array in columns.items()}
            per_request[interface.LABEL], per_request[interface.CONFIDENCE] = flat_decisions(
                per_request[interface.SELECTED], per_request[interface.PROBABILITIES], interface.MULTI_LABEL_SEPARATOR)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                output_tensor(name, per_request[name], dtype) for name, dtype in self.dtypes.items()]))
            row += size
        return responses
