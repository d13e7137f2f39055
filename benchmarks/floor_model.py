"""The benchmark's floor: the direct model with an instant engine (benchmarks/floor.py installs it).

Copied into a direct build's version directory as model.py, beside the built model renamed
direct_model.py. Everything a served request costs stays: gRPC, Triton's scheduling, the stub's
transfers, parsing, tokenizing, decoding, the answers and the batch hold. Only the engine call is
gone: the engine runs once, on the first row it is given, and every batch after that is answered
with that row's outputs, repeated. What the floor costs is what the server adds to the engine.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from direct_model import TritonPythonModel as DirectModel  # noqa: E402


class InstantEngine:
    """Stands in for a runner: its signature, and `run` answering at once from one cached row."""

    def __init__(self, engine):
        self.engine = engine
        self.signature = engine.signature
        self.row: dict[str, np.ndarray] | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.row is None:
            outputs = self.engine.run({name: array[:1] for name, array in feeds.items()})
            self.row = {name: array[:1].copy() for name, array in outputs.items()}
        rows = len(next(iter(feeds.values())))
        return {name: np.repeat(array, rows, axis=0) for name, array in self.row.items()}


class TritonPythonModel(DirectModel):
    def setup(self):
        super().setup()
        self.runner = InstantEngine(self.runner)
