"""Model runtimes behind one interface: Paddle Inference and ONNX Runtime.

Used by the Triton model step, by `builder verify` (static reference) and by the
benchmarks, so the served path and the measured path are the same code.
"""
from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .program import ProgramFiles, ProgramFormat, ProgramSignature, read_signature


class RuntimeKind(str, enum.Enum):
    PADDLE = "paddle"
    ONNXRUNTIME = "onnxruntime"

    def __str__(self) -> str:
        return self.value


class Runner(Protocol):
    signature: ProgramSignature

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; returns outputs by name."""


class PaddleRunner:
    """Paddle Inference predictor on CPU (oneDNN on, as Paddle's default)."""

    def __init__(self, files: ProgramFiles, num_threads: int = 1):
        os.environ.setdefault("GLOG_minloglevel", "2")
        from paddle import inference

        self.signature = read_signature(files)
        config = inference.Config(str(files.model_file), str(files.params_file))
        config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(num_threads)
        self._predictor = inference.create_predictor(config)
        self._inputs = {n: self._predictor.get_input_handle(n) for n in self._predictor.get_input_names()}
        self._outputs = {n: self._predictor.get_output_handle(n) for n in self._predictor.get_output_names()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, handle in self._inputs.items():
            handle.copy_from_cpu(np.ascontiguousarray(feeds[name]))
        self._predictor.run()
        return {name: handle.copy_to_cpu() for name, handle in self._outputs.items()}


class OnnxRunner:
    """ONNX Runtime session on CPU."""

    def __init__(self, files: ProgramFiles, num_threads: int = 1):
        import onnxruntime as ort

        self.signature = read_signature(files)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(files.model_file), options,
                                             providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, {t.name: feeds[t.name] for t in self.signature.inputs})
        return dict(zip(self._output_names, values))


def create_runner(kind: RuntimeKind, files: ProgramFiles, num_threads: int = 1) -> Runner:
    if kind is RuntimeKind.ONNXRUNTIME:
        if files.format is not ProgramFormat.ONNX:
            raise ValueError(f"onnxruntime needs an .onnx file, got {files.model_file}")
        return OnnxRunner(files, num_threads)
    return PaddleRunner(files, num_threads)


def runner_for_directory(directory: Path, kind: RuntimeKind, num_threads: int = 1) -> Runner:
    from .program import find_program

    files = find_program(directory)
    if files is None:
        raise FileNotFoundError(f"no exported program in {directory}")
    return create_runner(kind, files, num_threads)


def pad_and_concat(parts: list[np.ndarray], pad_value: int) -> np.ndarray:
    """Stack [Bi, Li] arrays into [sum Bi, max Li], padding on the right."""
    width = max(p.shape[1] for p in parts)
    if all(p.shape[1] == width for p in parts):
        return np.concatenate(parts, axis=0)
    out = np.full((sum(p.shape[0] for p in parts), width), pad_value, dtype=parts[0].dtype)
    row = 0
    for part in parts:
        out[row: row + part.shape[0], : part.shape[1]] = part
        row += part.shape[0]
    return out


def split_rows(array: np.ndarray, sizes: list[int], seq_lens: list[int] | None = None) -> list[np.ndarray]:
    """Split a batch back per request; with seq_lens, cut axis 1 back to each request's length."""
    pieces, row = [], 0
    for index, size in enumerate(sizes):
        piece = array[row: row + size]
        if seq_lens is not None:
            piece = piece[:, : seq_lens[index]]
        pieces.append(np.ascontiguousarray(piece))
        row += size
    return pieces
