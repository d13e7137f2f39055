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

from builder.engine.timing import EngineOverMemory, Race, memory_limit_mb
from builder.phases import phase
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
TIMED_RUNS = 3  # the first run is not timed (allocations, first-shape preparation)


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
    tolerance: float = TOLERANCE["fp32"]  # the largest difference the chosen engine was allowed
    timing: object = field(default=None, repr=False, compare=False)  # EngineTiming, where a race timed it

    def to_json(self) -> dict:
        return {"reference": self.reference, "onednn": self.onednn, "note": self.note, "tolerance": self.tolerance,
                "checked": [{**asdict(f), "difference": float(f"{f.difference:.3g}"),
                             "ms_per_batch": round(f.ms_per_batch, 2)} for f in self.checked]}


class SourceProbe:
    """The source model's outputs on PROBE_TEXTS; engines are measured against them. The model
    itself is not kept: a build holds one copy of the model at a time."""

    def __init__(self, model: SourceModel, tokenizer: ErnieTokenizer, weights_file: Path, quantized: bool = False):
        self.quantized = quantized  # a quantization-aware program: engines are held to TOLERANCE["qat"]
        self.tokenizer = tokenizer
        self.dygraph, self.reference = model.dygraph, model.description
        encoder = FeedEncoder(tokenizer, WindowSettings(), list(KNOWN_MODEL_INPUTS))
        self.feeds = encoder.encode([list(PROBE_TEXTS)]).feeds  # every input a program may take
        try:
            self.expected = [o.astype(np.float32) for o in model.run(self.feeds)]
        except UserError:
            raise
        except Exception as exc:
            raise _cannot_run(exc, weights_file) from exc
        self.scale = max(1.0, max(float(np.abs(o).max()) for o in self.expected))

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


def probe_record(probe: SourceProbe, signature, tolerance: float) -> dict:
    """What build.json keeps of the probe (`probe`): the texts, the feeds the served program takes
    (`signature`), the source model's outputs on them and the largest difference (relative to
    `scale`) the served engine may show. `builder publish` holds a version on a live server to it
    before the version takes traffic."""
    outputs = [t.name for t in signature.outputs]
    return {"texts": list(PROBE_TEXTS), "scale": probe.scale, "tolerance": tolerance,
            "feeds": {t.name: {"dtype": t.dtype, "values": probe.feeds[t.name].astype(t.dtype).tolist()}
                      for t in signature.inputs},
            "outputs": {name: values.tolist() for name, values in zip(outputs, probe.expected)}}


def served_tolerance(probe: SourceProbe, runner: Runner, engine: str, proof: EngineProof | None) -> float:
    """The difference a server running the build's files may show: the proof's tolerance, or,
    for files the proof did not measure (an INT8 model), twice what they show here (at least
    the FP32 tolerance)."""
    figures = probe.measure(runner, engine)
    allowed = proof.tolerance if proof is not None else TOLERANCE["fp32"]
    return allowed if figures.agrees(allowed) else max(TOLERANCE["fp32"], 2 * figures.difference)


def load_source_model(source, task, weights_file: Path, pooling: str = "cls") -> SourceModel:
    """The source model (builder.source.reference), or why its weights cannot run."""
    try:
        return SourceModel(source, task, pooling)
    except UserError:
        raise
    except Exception as exc:
        raise _cannot_run(exc, weights_file) from exc


def _cannot_run(exc: Exception, weights_file: Path) -> UserError:
    return UserError(f"the program cannot run with these weights ({type(exc).__name__}: "
                     f"{str(exc).strip().splitlines()[0][:300]}); the file may be truncated, corrupt or from "
                     "another model: export it again", str(weights_file))


def prove_paddle(probe: SourceProbe, program: ProgramFiles, precision: str, threads: int,
                 convert=None, pick_kernels: bool = True, race: Race | None = None,
                 onnx: EngineFigures | None = None) -> EngineProof:
    """Paddle Inference on the kernels that compute what the source model does, the faster of
    the two where both do (`pick_kernels`; FP32 only): oneDNN, Paddle's default, or its native
    CPU kernels, timed by `race` (a race of their own where none is given). Where oneDNN differs,
    ONNX Runtime's figures (`onnx`, else measured on `convert(program)`, ONNX files or None) also
    confirm the native kernels when they are the reference themselves (a static export). One
    predictor is held at a time; `proof.timing` is the served kernels' timing, when timed."""
    tolerance = probe.tolerance(precision)
    picks = pick_kernels and precision == "fp32"
    race = race if race is not None else Race(probe.tokenizer, "mixed", memory_limit_mb(program)) if picks else None
    onednn = _measured(probe, lambda: PaddleRunner(program, threads, precision), "paddle (oneDNN)", tolerance,
                       race, "oneDNN")
    if onednn.figures.agrees(tolerance):
        if not picks and onednn.over_memory:
            raise UserError(f"Paddle Inference's oneDNN kernels: {onednn.over_memory}", str(program.model_file))
        if not picks:
            return EngineProof(probe.reference, (onednn.figures,), tolerance=tolerance, timing=onednn.timing)
        return _faster_kernels(probe, program, threads, onednn, tolerance, race)
    native = _measured(probe, lambda: PaddleRunner(program, threads, onednn=False), "paddle (native kernels)",
                       tolerance, None, None)
    if onnx is None and not probe.dygraph and convert is not None:
        converted = convert(program)
        if converted is not None:
            with phase("prove onnxruntime"):
                onnx = probe.measure(OnnxRunner(converted, threads), "onnxruntime")
    checked = tuple(f for f in (onednn.figures, native.figures, onnx) if f is not None)
    confirmed = probe.dygraph or (onnx is not None and onnx.agrees(tolerance))
    if precision != "fp32" or not native.figures.agrees(tolerance) or not confirmed:
        raise UserError(f"Paddle Inference does not compute what the source model ({probe.reference}) does on "
                        f"sample texts: {'; '.join(f.describe() for f in checked)} (tolerance "
                        f"{tolerance:g}). Nothing was written; try another --runtime",
                        str(program.model_file))
    timing = _time(race, program, threads, False, "native") if race is not None else None
    note = (f"Paddle Inference's oneDNN kernels change this model's outputs by {onednn.figures.difference:.3g}; "
            f"its native CPU kernels agree with the source model ({native.figures.difference:.2g}) and serve it "
            f"instead, at {native.figures.ms_per_batch:.1f} ms a probe batch against "
            f"{onednn.figures.ms_per_batch:.1f} ms with oneDNN")
    if onnx is not None and onnx.agrees(tolerance):
        note += f"; --runtime onnxruntime agrees too ({onnx.difference:.2g}) at {onnx.ms_per_batch:.1f} ms"
    log.warning(note)
    return EngineProof(probe.reference, checked, onednn=False, note=note, tolerance=tolerance, timing=timing)


@dataclass(frozen=True)
class _Measured:
    figures: EngineFigures
    timing: object = None  # EngineTiming where it was timed
    over_memory: str = ""  # why its timing was stopped (EngineOverMemory), if it was


def _measured(probe: SourceProbe, make_runner, engine: str, tolerance: float, race: Race | None,
              kernels: str | None) -> _Measured:
    """A predictor's figures on the probe texts and, where it agrees and a race is given, its
    timing (as paddle's `kernels`); the predictor is let go before this returns."""
    with phase("prove paddle"):
        runner = make_runner()
        figures = probe.measure(runner, engine)
    timing, over = None, ""
    if race is not None and figures.agrees(tolerance):
        with phase("time engines"):
            try:
                timing = race.time("paddle", runner, kernels, figures.ms_per_batch * 8 / len(PROBE_TEXTS))
            except EngineOverMemory as exc:
                over = str(exc)
                log.warning("%s", over)
    return _Measured(figures, timing, over)


def _time(race: Race, program: ProgramFiles, threads: int, onednn: bool, kernels: str):
    runner = PaddleRunner(program, threads, onednn=onednn)
    with phase("time engines"):
        try:
            return race.time("paddle", runner, kernels)
        except EngineOverMemory as exc:
            raise UserError(f"Paddle Inference's {kernels} kernels: {exc}", str(program.model_file)) from None


def _faster_kernels(probe: SourceProbe, program: ProgramFiles, threads: int, onednn: _Measured,
                    tolerance: float, race: Race) -> EngineProof:
    """Both kernels timed on the shapes a server gives them (builder.engine.timing): oneDNN redoes
    its weight layouts when shapes change, which a single repeated shape hides. Native kernels that
    differ from the source are not kept."""
    native = _measured(probe, lambda: PaddleRunner(program, threads, onednn=False), "paddle (native kernels)",
                       tolerance, race, "native")
    usable = [m for m in (onednn, native) if m.figures.agrees(tolerance) and m.timing is not None]
    if not usable:
        why = "; ".join(m.over_memory or m.figures.describe() for m in (onednn, native))
        raise UserError(f"Paddle Inference has no kernels to serve this model with: {why}", str(program.model_file))
    if len(usable) == 1:
        kept = usable[0]
        set_aside = native if kept is onednn else onednn
        reason = set_aside.over_memory or f"they differ from the source model ({set_aside.figures.describe()})"
        note = (f"Paddle Inference runs on its {'oneDNN' if kept is onednn else 'native CPU'} kernels; "
                f"its {'native CPU' if kept is onednn else 'oneDNN'} kernels were set aside: {reason}")
        if kept is onednn and not set_aside.over_memory:
            note = ""  # Paddle's default, the other kernels differing: nothing to say
        else:
            log.info(note)
        return EngineProof(probe.reference, (onednn.figures, native.figures), onednn=kept is onednn, note=note,
                           tolerance=tolerance, timing=kept.timing)
    best = min((onednn.timing, native.timing), key=lambda t: t.score(race.expect))
    use_native = best is native.timing
    shown = ", ".join(t.describe().removeprefix("paddle ") for t in (onednn.timing, native.timing))
    note = (f"Paddle Inference runs on its {'native CPU' if use_native else 'oneDNN'} kernels, the faster on "
            f"served shapes: {shown}")
    log.info(note)
    return EngineProof(probe.reference, (onednn.figures, native.figures), onednn=not use_native, note=note,
                       tolerance=tolerance, timing=best)


def prove_converted(probe: SourceProbe, kind: RuntimeKind, converted: ProgramFiles, program: ProgramFiles,
                    threads: int, precision: str = "fp32", race: Race | None = None) -> EngineProof:
    """An engine that runs the ONNX conversion (ONNX Runtime, OpenVINO), or OpenVINO reading a
    Paddle 2.x program itself (`converted` is `program`), must compute what the source model does
    (paddle2onnx has lost weights of some Paddle 2.x programs silently). Timed by `race` where given."""
    tolerance = probe.tolerance(precision)
    with phase(f"prove {kind.value}"):
        runner = create_runner(kind, converted, threads, precision)
        figures = probe.measure(runner, kind.value)
    if figures.agrees(tolerance):
        timing = None
        if race is not None:
            with phase("time engines"):
                try:
                    timing = race.time(kind.value, runner,
                                       probe_ms_per_8=figures.ms_per_batch * 8 / len(PROBE_TEXTS))
                except EngineOverMemory as exc:
                    message = f"{exc}; --runtime {kind.value} serves it anyway"
            if timing is None:
                raise UserError(message, str(program.model_file))
        return EngineProof(probe.reference, (figures,), tolerance=tolerance, timing=timing)
    del runner
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
