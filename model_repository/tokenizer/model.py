"""Tokenizer step: text BYTES -> the model's id tensors (+ window bookkeeping).

Modes (see serving_core.windows.TokenizerMode): `truncate` gives [B, L] ids and a
truncation flag; `windows` and `qa` give [B, W, L] windows plus `token_index` and
character `offsets` for the postprocess (serving_core.encoder does the encoding). All
requests of one `execute` are tokenized in one Rust batch call; a bad request gets its own
error and the others are answered.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from triton_helpers import StepModel, output_tensor, read_text_columns  # noqa: E402

from serving_core import interface  # noqa: E402
from serving_core.encoder import FeedEncoder  # noqa: E402
from serving_core.tokenization import ErnieTokenizer, TokenizerSettings  # noqa: E402
from serving_core.windows import WindowSettings  # noqa: E402


class TritonPythonModel(StepModel):
    STEP = "tokenizer step"

    def setup(self):
        settings = self.read_settings(TokenizerSettings)
        self.windows = self.read_settings(WindowSettings)
        self.tokenizer = ErnieTokenizer.from_files(self.version_dir / settings.vocab_file, settings)
        self.text_inputs = [i["name"] for i in self.config["input"]]
        self.feed_names = [n for n in self.dtypes if n not in interface.TOKENIZER_EXTRAS]
        self.encoder = FeedEncoder(self.tokenizer, self.windows, self.feed_names)

    def _encode(self, columns: list[list[str]]) -> tuple[dict, dict]:
        """All texts of the batch -> (output name -> array with one row per text,
        per-row extents of the padded axes: tokens, windows, offsets)."""
        encoded = self.encoder.encode(columns)
        arrays = {**encoded.feeds, interface.TEXT_TRUNCATED: encoded.truncated.reshape(-1, 1)}
        batch = encoded.windows
        ids = encoded.feeds.get("input_ids")
        self.metrics.count(texts=len(encoded.truncated), truncated=encoded.truncated.sum(),
                           windows=batch.windows.sum() if batch is not None else len(encoded.truncated),
                           tokens=(ids != self.tokenizer.pad_id).sum() if ids is not None else 0)
        if batch is None:
            if self.windows.pad_to_max:
                arrays.update(self.encoder.full_width(encoded.feeds))
                return arrays, {"tokens": np.full(len(encoded.lengths), self.tokenizer.settings.max_seq_len)}
            return arrays, {"tokens": encoded.lengths}
        arrays[interface.TOKEN_INDEX] = batch.token_index
        arrays[interface.OFFSETS] = batch.offsets
        arrays[interface.TEXT_WINDOWS] = batch.windows.astype(np.int32).reshape(-1, 1)
        return arrays, {"tokens": batch.lengths, "windows": batch.windows,
                        "offsets": np.maximum(batch.num_tokens, 1)}

    def answer(self, requests):
        parsed = [read_text_columns(request, self.text_inputs) for request in requests]
        columns = [[t for p in parsed for t in p[k]] for k in range(len(self.text_inputs))]
        arrays, extents = self._encode(columns)
        responses, row = [], 0
        for item in parsed:
            rows = slice(row, row + len(item[0]))
            tensors = [output_tensor(name, self._cut(name, arrays[name][rows], extents, rows), dtype)
                       for name, dtype in self.dtypes.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            row += len(item[0])
        return responses

    def _cut(self, name, array, extents, rows):
        if name in (interface.TEXT_TRUNCATED, interface.TEXT_WINDOWS):
            return array
        if name == interface.OFFSETS:
            return array[:, : max(int(extents["offsets"][rows].max()), 1)]
        width = int(extents["tokens"][rows].max())
        if array.ndim == 3:
            return array[:, : int(extents["windows"][rows].max()), :width]
        return array[:, :width]
