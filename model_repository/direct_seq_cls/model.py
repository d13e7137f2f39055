"""Direct seq_cls model: tokenizer, engine and postprocess in one batched Python model.

Built with `builder build --direct` beside the ensemble, as `<name>_direct`. Triton's dynamic
batcher hands it several requests; their texts are tokenized in one call, run as one engine
batch (in groups within the token budget) and decoded, with no step-to-step hops. Its inputs
and outputs are the ensemble's, but batched: a per-text value is [B, 1]. A request that fails
(bad UTF-8, blank text) gets its own error; the others in the batch are answered
(triton_helpers.answer_each). Same serving_core code as the three steps, so the answers are the
ensemble's.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import numpy as np  # noqa: E402
from triton_helpers import DirectModel  # noqa: E402

from serving_core import interface  # noqa: E402
from serving_core.seq_cls import SeqClsSettings, decode  # noqa: E402


class TritonPythonModel(DirectModel):
    def setup_decoding(self):
        self.settings = self.read_settings(SeqClsSettings)
        self.label_names = np.array([n.encode("utf-8") for n in self.settings.labels], dtype=np.object_)

    def answer(self, requests):
        parsed, encoded, logits = self.run_texts(requests)
        result = decode(logits, self.settings)
        return self.respond(requests, parsed, {
            interface.LABEL: result.label[:, None],
            interface.CONFIDENCE: result.confidence[:, None],
            interface.LABEL_NAME: self.label_names[result.label][:, None],
            interface.PROBABILITIES: result.probabilities,
            interface.SELECTED: result.selected,
            interface.TRUNCATED: encoded.truncated.reshape(-1, 1),
        })
