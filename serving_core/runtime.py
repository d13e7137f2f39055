"""Model runtimes behind one interface: Paddle Inference, ONNX Runtime and OpenVINO.

Used by the Triton model step, by `builder verify` (static reference) and by the
benchmarks, so the served path and the measured path are the same code.
"""
from __future__ import annotations

import enum
import os
from typing import Protocol

import numpy as np

from .program import ProgramFiles, ProgramFormat, ProgramSignature, read_signature


class RuntimeKind(str, enum.Enum):
    PADDLE = "paddle"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"

    def __str__(self) -> str:
        return self.value


class Runner(Protocol):
    signature: ProgramSignature

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; returns outputs by name."""


class PaddleRunner:
    """Paddle Inference predictor on CPU: oneDNN kernels (Paddle's default) or, with
    `onednn=False`, Paddle's native CPU kernels (oneDNN miscomputes some graphs: the build
    turns it off for a model whose answers it changes)."""

    def __init__(self, files: ProgramFiles, num_threads: int = 1, precision: str = "fp32", onednn: bool = True):
        os.environ.setdefault("GLOG_minloglevel", "2")
        from paddle import inference

        self.signature = read_signature(files)
        self.precision = precision
        config = inference.Config(str(files.model_file), str(files.params_file))
        config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(num_threads)
        if not onednn:
            config.disable_mkldnn()
        elif precision == "bf16":
            config.enable_mkldnn_bfloat16()
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


class OpenVinoRunner:
    """OpenVINO on CPU, reading the ONNX conversion, a build's INT8 IR, or a Paddle 2.x `.pdmodel`
    itself (its Paddle reader takes quantization-aware programs, which paddle2onnx cannot convert). FP32 is asked for
    explicitly: on a CPU with bfloat16 instructions OpenVINO otherwise computes in bf16 (0.007 off
    in logits on ERNIE 3.0 Medium); `precision="bf16"` asks for that on purpose."""

    def __init__(self, files: ProgramFiles, num_threads: int = 1, precision: str = "fp32"):
        import openvino

        self.signature = read_signature(files)
        core = openvino.Core()
        model = core.read_model(str(files.model_file), str(files.params_file) if files.params_file else None)
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": num_threads, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "ENABLE_CPU_PINNING": False})
        self._request = compiled.create_infer_request()
        self._outputs = list(zip(_outputs_in_order(compiled.outputs, self.signature),
                                 (t.name for t in self.signature.outputs)))
        self._inputs = [t.name for t in self.signature.inputs]  # fed by name: a .pdmodel's come in another order

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._request.infer({name: np.ascontiguousarray(feeds[name]) for name in self._inputs})
        return {name: np.array(results[output]) for output, name in self._outputs}


def _outputs_in_order(outputs, signature: ProgramSignature) -> list:
    """OpenVINO's outputs in the program's order: by tensor name where OpenVINO kept the program's
    names, else by position (it may name an ONNX output after the node that makes it, "Add.135")."""
    by_name = {name: output for output in outputs for name in output.get_names()}
    if all(t.name in by_name for t in signature.outputs):
        return [by_name[t.name] for t in signature.outputs]
    return list(outputs)


def create_runner(kind: RuntimeKind, files: ProgramFiles, num_threads: int = 1, precision: str = "fp32",
                  onednn: bool = True) -> Runner:
    if kind is RuntimeKind.ONNXRUNTIME and files.format is not ProgramFormat.ONNX:
        raise ValueError(f"{kind} runs an .onnx file, got {files.model_file}")
    if kind is RuntimeKind.OPENVINO and files.format is ProgramFormat.PIR:
        raise ValueError(f"{kind} runs an .onnx, OpenVINO IR or Paddle 2.x .pdmodel file, got {files.model_file}")
    if kind is RuntimeKind.PADDLE and files.format not in (ProgramFormat.PIR, ProgramFormat.LEGACY):
        raise ValueError(f"{kind} runs a Paddle program, got {files.model_file}")
    if kind is RuntimeKind.ONNXRUNTIME:
        return OnnxRunner(files, num_threads)
    if kind is RuntimeKind.OPENVINO:
        return OpenVinoRunner(files, num_threads, precision)
    return PaddleRunner(files, num_threads, precision, onednn)


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them (empty where /proc/cpuinfo cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return frozenset()


def cpu_model() -> str:
    """This CPU's model name as Linux gives it ("" where /proc/cpuinfo cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


ENGINE_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")  # what
# the engines' kernels use: benchmark reports name them, since the ranking of engines moves with them


def cpu_has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU has bfloat16 instructions oneDNN uses (AMX or AVX512-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return "amx_bf16" in flags or "avx512_bf16" in flags


INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_int8_dot(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU multiplies INT8 into 32-bit sums in one instruction (VNNI or AMX). Without
    it, INT8 kernels add pairs of u8 x s8 products in 16 bits, which saturate for weights that use
    the full 8-bit range (ONNX Runtime's and NNCF's documentation: the "reduce range" and
    "overflow fix" options)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & INT8_DOT_FLAGS)


def pad_and_concat(parts: list[np.ndarray], pad_value: int) -> np.ndarray:
    """Stack [Bi, ...] arrays into [sum Bi, max ...], padding every non-batch axis at the end."""
    shape = tuple(max(p.shape[axis] for p in parts) for axis in range(1, parts[0].ndim))
    if all(p.shape[1:] == shape for p in parts):
        return np.concatenate(parts, axis=0)
    out = np.full((sum(p.shape[0] for p in parts), *shape), pad_value, dtype=parts[0].dtype)
    row = 0
    for part in parts:
        out[(slice(row, row + part.shape[0]), *(slice(0, n) for n in part.shape[1:]))] = part
        row += part.shape[0]
    return out


def split_rows(array: np.ndarray, sizes: list[int],
               cut_shapes: list[tuple[int, ...]] | None = None) -> list[np.ndarray]:
    """Split a batch back per request; `cut_shapes[i]` cuts the axes after the batch axis
    back to request i's own sizes (undoing `pad_and_concat`)."""
    pieces, row = [], 0
    for index, size in enumerate(sizes):
        piece = array[row: row + size]
        if cut_shapes is not None:
            piece = piece[(slice(None), *(slice(0, n) for n in cut_shapes[index]))]
        pieces.append(np.ascontiguousarray(piece))
        row += size
    return pieces


def token_budget_groups(rows: list[int], widths: list[int], budget: int) -> list[list[int]]:
    """Indices of consecutive requests grouped so that each group's padded batch (its rows
    times its longest width) stays within `budget` tokens; a request over the budget on its
    own is a group. `budget` 0: one group."""
    groups: list[list[int]] = []
    group_rows = group_width = 0
    for index, (count, width) in enumerate(zip(rows, widths)):
        merged_rows, merged_width = group_rows + count, max(group_width, width)
        if groups and budget and merged_rows * merged_width > budget:
            groups.append([index])
            group_rows, group_width = count, width
        else:
            if not groups:
                groups.append([])
            groups[-1].append(index)
            group_rows, group_width = merged_rows, merged_width
    return groups


class RequestBatcher:
    """Runs the requests Triton hands to one `execute` as few model batches.

    Inputs are [B, L] (one window per text) or [B, W, L] (W windows per text, flattened to
    [B*W, L] for the model; windows that are all padding are not computed). Requests are
    padded to the longest and concatenated; outputs are split back and each output's
    dynamic axes (`dynamic_axes[name]` of them, right after the batch axis) are cut back to
    the request's own window count and length. With `max_batch_tokens`, requests are run in
    consecutive groups of at most that many padded tokens: on CPU, throughput per text falls
    beyond a few thousand tokens a batch (measured by `benchmarks.run`); a group of one request
    over the budget (many windows) is run in slices within it too, so no request makes one
    engine call, and its memory, grow without bound.
    """

    def __init__(self, runner: Runner, pad_values: dict[str, int], dynamic_axes: dict[str, int],
                 max_batch_tokens: int = 0):
        self.runner = runner
        self.pad_values = pad_values
        self.dynamic_axes = dynamic_axes
        self.max_batch_tokens = max_batch_tokens
        self.input_names = [t.name for t in runner.signature.inputs]
        self.dtypes = {t.name: t.dtype for t in runner.signature.inputs}
        self.ids_name = ids_input(self.input_names)

    def run(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        first = self.ids_name
        shapes = [r[first].shape for r in requests]
        groups = token_budget_groups([int(np.prod(s[:-1])) for s in shapes], [s[-1] for s in shapes],
                                     self.max_batch_tokens)
        results: list[dict[str, np.ndarray]] = [{} for _ in requests]
        for group in groups:
            for index, result in zip(group, self._run_batch([requests[i] for i in group])):
                results[index] = result
        return results

    def _run_batch(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        first = self.ids_name
        sizes = [r[first].shape[0] for r in requests]
        shapes = [r[first].shape[1:] for r in requests]
        feeds = {n: pad_and_concat([r[n] for r in requests], self.pad_values.get(n, 0)) for n in self.input_names}
        leading = feeds[first].shape[:-1]  # (B,) or (B, W)
        flat = {n: a.reshape(-1, a.shape[-1]).astype(self.dtypes[n], copy=False) for n, a in feeds.items()}
        live = (flat[first] != self.pad_values.get(first, 0)).any(axis=1)
        if live.all():
            outputs = run_within_budget(self.runner, flat, self.max_batch_tokens)
        else:  # skip rows that are only padding (windows a shorter request does not have)
            partial = run_within_budget(self.runner, {n: a[live] for n, a in flat.items()},
                                        self.max_batch_tokens)
            outputs = {}
            for name, value in partial.items():
                full = np.zeros((len(live), *value.shape[1:]), dtype=value.dtype)
                full[live] = value
                outputs[name] = full
        result = [{} for _ in requests]
        for name, value in outputs.items():
            value = value.reshape(*leading, *value.shape[1:])
            axes = self.dynamic_axes.get(name, 0)
            cuts = [shape[:axes] for shape in shapes] if axes else None
            for index, piece in enumerate(split_rows(value, sizes, cuts)):
                result[index][name] = piece
        return result



def ids_input(names: list[str]) -> str:
    """The input whose padding marks padding: input_ids, wherever the program lists it (an ONNX
    conversion may put token_type_ids first, and those are 0 on real tokens too)."""
    return "input_ids" if "input_ids" in names else names[0]


def run_within_budget(runner: Runner, feeds: dict[str, np.ndarray], max_tokens: int) -> dict[str, np.ndarray]:
    """Run [rows, L] feeds in consecutive engine calls of at most `max_tokens` padded tokens
    (0: one call) and join the outputs, so that no request makes one engine call, and its
    memory, grow without bound."""
    rows, width = next(iter(feeds.values())).shape
    return run_in_slices(runner.run, feeds, max(1, max_tokens // max(width, 1)) if max_tokens else rows)


def run_in_slices(run, feeds: dict[str, np.ndarray], rows_per_call: int) -> dict[str, np.ndarray]:
    """`run` on consecutive slices of at most `rows_per_call` rows of `feeds`, outputs joined."""
    rows = next(iter(feeds.values())).shape[0]
    if rows_per_call >= rows:
        return run(feeds)
    parts = [run({n: a[start: start + rows_per_call] for n, a in feeds.items()})
             for start in range(0, rows, rows_per_call)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
