"""A user's Paddle program loaded once in a child process before the builder loads it itself.

Paddle Inference's C++ loader can crash the whole process on a corrupted program that still
parses (the intake fuzzer, tests/fuzz_intake.py, found a `.pdmodel` with a few flipped bytes that
does): such a file must fail the command with the file named, not kill it. The child creates the
predictor on Paddle's native kernels and runs one short batch; a child killed by a signal or that
hangs refuses the program (an error Paddle raises is the build's to report, with its advice).
Each program (by content) is probed once a process.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat

from builder.phases import run_child

TIMEOUT_S = 600  # loading and one two-token batch: seconds even for large models


def probe_program(files: ProgramFiles) -> None:
    """Refuse (UserError naming the program) a Paddle program Paddle's loader crashes or hangs on."""
    if files.format is ProgramFormat.ONNX:
        return
    digest = hashlib.sha256()
    for path in (files.model_file, files.params_file):
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    if digest.hexdigest() not in _PROBED:
        _probe(str(files.model_file), str(files.params_file), files.format.value)
        _PROBED.add(digest.hexdigest())


_PROBED: set[str] = set()  # contents this process has seen Paddle load and run


def _probe(model_file: str, params_file: str, fmt: str) -> None:
    command = [sys.executable, "-m", __name__, model_file, params_file, fmt]
    try:
        result = run_child(command, TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"Paddle did not load and run the program within {TIMEOUT_S} s", model_file) from None
    if result.returncode < 0:  # an error Paddle raises is left to the build, which says what to do about it
        raise UserError(f"Paddle's loader crashed on this program (killed by signal {-result.returncode}): the "
                        "file is corrupt; export it again", model_file)


def _run(model_file: str, params_file: str, fmt: str) -> None:
    """The child: the predictor on native kernels, one batch of two tokens where the inputs are known."""
    import numpy as np

    from serving_core.runtime import PaddleRunner
    from serving_core.tokenization import KNOWN_MODEL_INPUTS, feeds_from_ids

    runner = PaddleRunner(ProgramFiles(ProgramFormat(fmt), Path(model_file), Path(params_file)), onednn=False)
    inputs = runner.signature.inputs
    if all(spec.name in KNOWN_MODEL_INPUTS for spec in inputs):
        ids = np.ones((1, 2), dtype=np.int64)
        feeds = feeds_from_ids([spec.name for spec in inputs], ids, np.zeros_like(ids), 0)
        runner.run({spec.name: feeds[spec.name].astype(spec.dtype) for spec in inputs})
    print(json.dumps({"loaded": model_file}))


if __name__ == "__main__":
    _run(*sys.argv[1:])
