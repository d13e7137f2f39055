"""Direct embedding model: tokenizer, engine and pooling's postprocess in one batched Python model.

Built with `builder build --task embedding --direct` beside the ensemble, as `<name>_direct`.
Triton's dynamic batcher hands it several requests; their texts are tokenized in one call, run as
one engine batch (in groups within the token budget) and normalised, with no step-to-step hops.
Its inputs and outputs are the ensemble's, batched: `embedding` [B, dim], `truncated` [B, 1]. A
request that fails (bad UTF-8, blank text) gets its own error; the others in the batch are answered.
Same serving_core code as the three steps, so the vectors are the ensemble's.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from triton_helpers import StepModel, output_tensor, read_text_columns, requested_dtypes  # noqa: E402

from serving_core import interface  # noqa: E402
from serving_core.embedding import EmbeddingSettings, embed  # noqa: E402
from serving_core.encoder import FeedEncoder  # noqa: E402
from serving_core.feed_checks import check_finite  # noqa: E402
from serving_core.model_step import ModelStepSettings, create_step_runner  # noqa: E402
from serving_core.runtime import run_within_budget  # noqa: E402
from serving_core.tokenization import ErnieTokenizer, TokenizerSettings  # noqa: E402
from serving_core.windows import WindowSettings  # noqa: E402


class TritonPythonModel(StepModel):
    STEP = "direct model"

    def setup(self):
        tokenizer_settings = self.read_settings(TokenizerSettings)
        self.tokenizer = ErnieTokenizer.from_files(self.version_dir / tokenizer_settings.vocab_file, tokenizer_settings)
        step = self.read_settings(ModelStepSettings)
        self.runner = create_step_runner(step, self.version_dir, warn=pb_utils.Logger.log_warn,
                                         log=pb_utils.Logger.log_info)
        self.max_batch_tokens = step.max_batch_tokens
        self.feed_dtypes = {t.name: t.dtype for t in self.runner.signature.inputs}
        self.encoder = FeedEncoder(self.tokenizer, self.read_settings(WindowSettings), list(self.feed_dtypes))
        self.settings = self.read_settings(EmbeddingSettings)
        self.pooled = self.runner.signature.outputs[0].name

    def answer(self, requests):
        parsed = [read_text_columns(request, [interface.TEXT]) for request in requests]
        encoded = self.encoder.encode([[t for p in parsed for t in p[0]]])
        self.metrics.count(texts=len(encoded.truncated), truncated=encoded.truncated.sum())
        feeds = {name: np.ascontiguousarray(encoded.feeds[name], dtype=dtype)
                 for name, dtype in self.feed_dtypes.items()}
        pooled = run_within_budget(self.runner, feeds, self.max_batch_tokens)[self.pooled]
        check_finite({self.pooled: pooled})
        columns = {interface.EMBEDDING: embed(pooled, self.settings),
                   interface.TRUNCATED: encoded.truncated.reshape(-1, 1)}
        responses, row = [], 0
        for request, item in zip(requests, parsed):
            rows = slice(row, row + len(item[0]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                output_tensor(name, columns[name][rows], dtype)
                for name, dtype in requested_dtypes(request, self.dtypes).items()]))
            row += len(item[0])
        return responses
