"""Direct embedding model: tokenizer, engine and normalisation in one batched Python model.

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


from triton_helpers import DirectModel  # noqa: E402

from serving_core import interface  # noqa: E402
from serving_core.embedding import EmbeddingSettings, embed  # noqa: E402


class TritonPythonModel(DirectModel):
    def setup_decoding(self):
        self.settings = self.read_settings(EmbeddingSettings)

    def answer(self, requests):
        parsed, encoded, pooled = self.run_texts(requests)
        return self.respond(requests, parsed, {interface.EMBEDDING: embed(pooled, self.settings),
                                               interface.TRUNCATED: encoded.truncated.reshape(-1, 1)})
