"""Postprocess step for embedding: each text's pooled vector -> `embedding` FP32 [B, dim].

Built with `--long-text windows`, each text's pooled vectors are [W, dim] over its windows (the
tokenizer says how many are real): their mean makes the text's vector, and `windows` says how
many were read. Vectors are L2-normalised unless the build said --no-normalize.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from triton_helpers import StepModel, per_text_rows, responses_from_columns, truncated_flags  # noqa: E402

from serving_core import interface  # noqa: E402
from serving_core.embedding import EmbeddingSettings, embed, embed_windows  # noqa: E402


class TritonPythonModel(StepModel):
    STEP = "postprocess"

    def setup(self):
        self.settings = self.read_settings(EmbeddingSettings)

    def answer(self, requests):
        windowed = bool(self.settings.aggregate)
        names = [interface.POOLED, interface.TEXT_TRUNCATED] + ([interface.TEXT_WINDOWS] if windowed else [])
        sizes, rows = per_text_rows(requests, names)
        columns = {interface.TRUNCATED: truncated_flags(rows)}
        if windowed:
            counts = np.array([int(count[0]) for count in rows[interface.TEXT_WINDOWS]], dtype=np.int32)
            columns[interface.EMBEDDING] = embed_windows(
                [pooled[:count] for pooled, count in zip(rows[interface.POOLED], counts)], self.settings)
            columns[interface.WINDOWS] = counts
        else:
            columns[interface.EMBEDDING] = embed(np.stack(rows[interface.POOLED]), self.settings)
        return responses_from_columns(sizes, columns, self.dtypes)
