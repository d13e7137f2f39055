"""Tokenizer step: TEXT (and TEXT_PAIR) BYTES -> the model's id tensors + truncation flags.

All requests Triton hands over in one `execute` are tokenized in one Rust batch call;
a bad request gets its own error response and the others are still answered.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402,F401
from triton_helpers import (decode_texts, error_response, input_array, model_config_of,  # noqa: E402
                            output_dtypes, output_tensor)

from serving_core import interface  # noqa: E402
from serving_core.errors import InvalidRequest  # noqa: E402
from serving_core.parameters import from_parameters, parameters_from_model_config  # noqa: E402
from serving_core.tokenization import ErnieTokenizer, TokenizerSettings, feed_for  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = model_config_of(args)
        settings = from_parameters(TokenizerSettings, parameters_from_model_config(config))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = ErnieTokenizer.from_files(version_dir / settings.vocab_file, settings)
        self.with_pair = any(i["name"] == interface.TEXT_PAIR for i in config["input"])
        self.dtypes = output_dtypes(config)
        self.feed_names = [n for n in self.dtypes if n != interface.TRUNCATED]

    def _read(self, request):
        texts = decode_texts(input_array(request, interface.TEXT), interface.TEXT)
        if not self.with_pair:
            return texts, None
        pairs = decode_texts(input_array(request, interface.TEXT_PAIR), interface.TEXT_PAIR)
        if len(pairs) != len(texts):
            raise InvalidRequest(f"{interface.TEXT_PAIR} has {len(pairs)} rows, {interface.TEXT} has {len(texts)}")
        return texts, pairs

    def execute(self, requests):
        parsed, errors = [], {}
        for index, request in enumerate(requests):
            try:
                parsed.append(self._read(request))
            except InvalidRequest as exc:
                errors[index] = str(exc)
                parsed.append(None)
        valid = [p for p in parsed if p is not None]
        texts = [t for p in valid for t in p[0]]
        pairs = [t for p in valid for t in p[1]] if self.with_pair else None
        batch = self.tokenizer.encode(texts, pairs) if texts else None

        feeds = {name: feed_for(name, batch, self.tokenizer.pad_id) for name in self.feed_names} if batch else {}
        responses, row = [], 0
        for index, item in enumerate(parsed):
            if item is None:
                responses.append(error_response(errors[index]))
                continue
            size = len(item[0])
            rows = slice(row, row + size)
            width = int(batch.lengths[rows].max())
            tensors = [output_tensor(name, feeds[name][rows, :width], self.dtypes[name]) for name in self.feed_names]
            tensors.append(output_tensor(interface.TRUNCATED, batch.truncated[rows].reshape(-1, 1),
                                         self.dtypes[interface.TRUNCATED]))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            row += size
        return responses
