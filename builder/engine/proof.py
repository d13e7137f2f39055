"""Every engine a build serves is proven against the source model before anything is written.

The source model is `builder.source.reference.SourceModel`: PaddleNLP's dygraph model for a checkpoint,
the program on Paddle Inference's native CPU kernels for a static export. No engine is judged
against itself or against another engine: Paddle Inference's default CPU path (oneDNN)
miscomputes some graphs (PaddleNLP's TinyBERT head, 0.27 in probabilities), so an ONNX
conversion judged against it was refused for being right. When oneDNN differs and the native
kernels agree, the model step runs the native kernels and the build says what that costs; when
no kernel agrees, the build refuses with the figures.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from serving_core.errors import UserError
from serving_core.program import ProgramFiles
from serving_core.runtime import OnnxRunner, PaddleRunner, Runner, RuntimeKind, create_runner
from serving_core.encoder import FeedEncoder
from serving_core.tokenization import KNOWN_MODEL_INPUTS, ErnieTokenizer
from serving_core.windows import WindowSettings

from builder.engine.timing import relative_scores, served_shapes, time_runner
from builder.source.reference import SourceModel

log = logging.getLogger(__name__)

# Short and long, Chinese and English, as the tokenizer step cuts them (one padded batch).
PROBE_TEXTS = ("打开空调", "play love story", "导航到北京西站然后播放音乐", "今天天气怎么样",
               "明天早上七点提醒我给妈妈打电话，然后把空调温度调到二十六度", "call mom", "关闭车窗",
               "播放周杰伦的花心 and turn the volume up a little")
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "qat": 5e-2}  # largest output difference, relative to the largest
# source output (measured: 7e-7 for ERNIE 3.0 Medium on oneDNN and ONNX Runtime; 1.2e-4 when paddle2onnx
# wrote erf GELU for a tanh GELU; 0.9 for oneDNN on TinyBERT). "qat": a quantization-aware program, whose
# fake quantization rounds, and a value near a rounding edge lands one step apart on another engine's
# arithmetic: Paddle 2.6's own native and oneDNN kernels differ by 0.021 on ERNIE 3.0 Medium's (equal labels).
TIMED_RUNS = 5


@dataclass(frozen=True)
class EngineFigures:
    """One engine on the probe texts: how far from the source model, and how fast."""

    engine: str
    difference: float  # largest |engine - source| over every output, / max(1, largest |source|)
    ms_per_batch: float  # median time of one probe batch

    def agrees(self, tolerance: float) -> bool:
        return self.difference <= tolerance

    def describe(self) -> str:
        return f"{self.engine}: difference {self.difference:.3g}, {self.ms_per_batch:.1f} ms a batch"


@dataclass(frozen=True)
class EngineProof:
    """What the build checked and chose; stored in build.json and printed by the build."""

    reference: str
    checked: tuple[EngineFigures, ...]
    onednn: bool = True  # paddle runtime: oneDNN kernels (False: Paddle's native CPU kernels)
    note: str = ""
    runner: object = field(default=None, repr=False, compare=False)  # the engine as proven (auto times it)
    tolerance: float = TOLERANCE["fp32"]  # the largest difference the chosen engine was allowed

    def to_json(self) -> dict:
        return {"reference": self.reference, "onednn": self.onednn, "note": self.note, "tolerance": self.tolerance,
                "checked": [{**asdict(f), "difference": float(f"{f.difference:.3g}"),
                             "ms_per_batch": round(f.ms_per_batch, 2)} for f in self.checked]}


class SourceProbe:
    """The source model's outputs on PROBE_TEXTS; engines are measured against them."""

    def __init__(self, source, task, tokenizer: ErnieTokenizer, weights_file: Path, quantized: bool = False):
        self.quantized = quantized  # a quantization-aware program: engines are held to TOLERANCE["qat"]
        self.tokenizer = tokenizer
        encoder = FeedEncoder(tokenizer, WindowSettings(), list(KNOWN_MODEL_INPUTS))
        self.feeds = encoder.encode([list(PROBE_TEXTS)]).feeds  # every input a program may take
        try:
            self.model = SourceModel(source, task)
            self.expected = [o.astype(np.float32) for o in self.model.run(self.feeds)]
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"the program cannot run with these weights ({type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[0][:300]}); the file may be truncated, corrupt or "
                            "from another model: export it again", str(weights_file)) from exc
        self.scale = max(1.0, max(float(np.abs(o).max()) for o in self.expected))

    @property
    def reference(self) -> str:
        return self.model.description

    def tolerance(self, precision: str = "fp32") -> float:
        """How far an engine computing at `precision` may be from the source model's outputs."""
        return TOLERANCE["qat" if self.quantized else precision]

    def measure(self, runner: Runner, engine: str) -> EngineFigures:
        """Run the probe batch through `runner` (outputs compared in program order)."""
        feeds = {t.name: self.feeds[t.name].astype(t.dtype) for t in runner.signature.inputs}
        order = [t.name for t in runner.signature.outputs]
        seconds, outputs = [], None
        for _ in range(TIMED_RUNS):
            started = time.perf_counter()
            result = runner.run(feeds)
            seconds.append(time.perf_counter() - started)
            outputs = outputs or [result[name].astype(np.float32) for name in order]
        if len(outputs) != len(self.expected):
            raise UserError(f"{engine} gives {len(outputs)} outputs, the source model {len(self.expected)}")
        worst = max(float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
                    for a, b in zip(outputs, self.expected))
        figures = EngineFigures(engine, worst / self.scale, 1000 * statistics.median(seconds[1:]))
        log.info("checked against %s: %s", self.reference, figures.describe())
        return figures


def prove_paddle(probe: SourceProbe, program: ProgramFiles, precision: str, threads: int,
                 convert=None, pick_kernels: bool = True) -> EngineProof:
    """Paddle Inference on the kernels that compute what the source model does, the faster of
    the two where both do (`pick_kernels`; FP32 only): oneDNN, Paddle's default, or its native
    CPU kernels. `convert(program) -> ONNX files or None` gives ONNX Runtime's figures where
    oneDNN differs, which also confirm the native kernels where they are the reference
    themselves (a static export)."""
    tolerance = probe.tolerance(precision)
    default_runner = PaddleRunner(program, threads, precision)
    onednn = probe.measure(default_runner, "paddle (oneDNN)")
    if onednn.agrees(tolerance):
        if pick_kernels and precision == "fp32":
            return _faster_kernels(probe, program, threads, default_runner, onednn, tolerance)
        return EngineProof(probe.reference, (onednn,), runner=default_runner, tolerance=tolerance)
    native_runner = PaddleRunner(program, threads, onednn=False)
    native = probe.measure(native_runner, "paddle (native kernels)")
    converted = convert(program) if convert is not None else None
    onnx = probe.measure(OnnxRunner(converted, threads), "onnxruntime") if converted is not None else None
    checked = tuple(f for f in (onednn, native, onnx) if f is not None)
    confirmed = probe.model.dygraph or (onnx is not None and onnx.agrees(tolerance))
    if precision != "fp32" or not native.agrees(tolerance) or not confirmed:
        raise UserError(f"Paddle Inference does not compute what the source model ({probe.reference}) does on "
                        f"sample texts: {'; '.join(f.describe() for f in checked)} (tolerance "
                        f"{tolerance:g}). Nothing was written; try another --runtime",
                        str(program.model_file))
    note = (f"Paddle Inference's oneDNN kernels change this model's outputs by {onednn.difference:.3g}; its "
            f"native CPU kernels agree with the source model ({native.difference:.2g}) and serve it instead, "
            f"at {native.ms_per_batch:.1f} ms a probe batch against {onednn.ms_per_batch:.1f} ms with oneDNN")
    if onnx is not None and onnx.agrees(tolerance):
        note += f"; --runtime onnxruntime agrees too ({onnx.difference:.2g}) at {onnx.ms_per_batch:.1f} ms"
    log.warning(note)
    return EngineProof(probe.reference, checked, onednn=False, note=note, runner=native_runner, tolerance=tolerance)


def _faster_kernels(probe: SourceProbe, program: ProgramFiles, threads: int, onednn_runner: PaddleRunner,
                    onednn: EngineFigures, tolerance: float) -> EngineProof:
    """Both kernels timed on the shapes a server gives them (builder.engine.timing), each
    relative to the faster at its shape: oneDNN redoes its weight layouts when shapes change,
    which a single repeated shape hides. Native kernels that differ from the source are not kept."""
    native_runner = PaddleRunner(program, threads, onednn=False)
    native = probe.measure(native_runner, "paddle (native kernels)")
    if not native.agrees(tolerance):
        return EngineProof(probe.reference, (onednn, native), runner=onednn_runner, tolerance=tolerance)
    shapes = served_shapes(probe.tokenizer, [t.name for t in onednn_runner.signature.inputs])
    timed = {"oneDNN": time_runner(onednn_runner, shapes), "native": time_runner(native_runner, shapes)}
    score = relative_scores(timed, "mixed")
    use_native = score["native"] < score["oneDNN"]
    shown = ", ".join(f"{k} {short:.3g} ms (1 short text) / {long:.3g} ms (8 x max_seq_len)"
                      for k, (short, long) in timed.items())
    note = (f"Paddle Inference runs on its {'native CPU' if use_native else 'oneDNN'} kernels, the faster on "
            f"served shapes: {shown}")
    log.info(note)
    return EngineProof(probe.reference, (onednn, native), onednn=not use_native, note=note,
                       runner=native_runner if use_native else onednn_runner, tolerance=tolerance)


def prove_converted(probe: SourceProbe, kind: RuntimeKind, converted: ProgramFiles, program: ProgramFiles,
                    threads: int, precision: str = "fp32") -> EngineProof:
    """An engine that runs the ONNX conversion (ONNX Runtime, OpenVINO), or OpenVINO reading a
    Paddle 2.x program itself (`converted` is `program`), must compute what the source model does
    (paddle2onnx has lost weights of some Paddle 2.x programs silently)."""
    tolerance = probe.tolerance(precision)
    runner = create_runner(kind, converted, threads, precision)
    figures = probe.measure(runner, kind.value)
    if figures.agrees(tolerance):
        return EngineProof(probe.reference, (figures,), runner=runner, tolerance=tolerance)
    advice = "export the model again or report the program to paddle2onnx"
    try:
        if prove_paddle(probe, program, "fp32", threads, pick_kernels=False):
            advice = "serve it with --runtime paddle, which agrees"
    except UserError:
        pass
    read = "the ONNX conversion" if converted is not program else "the program itself"
    raise UserError(f"{kind.value} on {read} does not compute what the source model "
                    f"({probe.reference}) does: {figures.describe()} on sample texts (tolerance "
                    f"{tolerance:g}); {advice}", str(program.model_file))


def cannot_run(exc: Exception) -> str:
    """Why an engine could not load or run a program, in one line (OpenVINO names the op it
    could not convert on one line of many)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    why = next((line for line in lines if "Fail to convert" in line), lines[-1])
    return f"{type(exc).__name__}: {why[:200]}"
