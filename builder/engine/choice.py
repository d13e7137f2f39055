"""`--runtime auto` (the default): the fastest engine whose answers equal the source model's,
measured at build time on the user's own model.

Every engine that can run the program (Paddle Inference, ONNX Runtime and OpenVINO on the ONNX
conversion) is proven against the source model first (builder.engine.proof); those that differ
are set aside with their figures. The others run a short shape (one 16-token text) and a long
one (eight texts of max_seq_len tokens) for a moment each, and the build keeps the fastest for
the traffic it expects: `short` (latency of single texts), `long` (throughput of full batches)
or `mixed` (both, each relative to the fastest engine at that shape).
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from serving_core.encoder import FeedEncoder
from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat
from serving_core.runtime import RuntimeKind, create_runner
from serving_core.windows import WindowSettings

from builder.engine.proof import EngineProof, SourceProbe, cannot_run, prove_converted, prove_paddle

log = logging.getLogger(__name__)

EXPECT = ("short", "long", "mixed")
SHORT_TEXT = "明天早上七点提醒我给妈妈打"  # 13 characters: 16 tokens with [CLS] and [SEP] (CJK: one a character)
LONG_TEXT = "导航到北京西站然后播放周杰伦的歌" * 64  # cut to max_seq_len
BUDGET_S = {"short": 0.5, "long": 1.0}  # timing per engine and shape: a moment, not a benchmark


@dataclass(frozen=True)
class EngineTiming:
    engine: str
    short_ms: float  # median of one 16-token text
    long_ms: float  # median of eight max_seq_len texts


@dataclass(frozen=True)
class EngineChoice:
    runtime: str
    expect: str
    timings: tuple[EngineTiming, ...]
    refused: dict[str, str]  # engine -> why (its answers differ, or it cannot run the program)
    precision: str = "fp32"  # "int8": the candidates were the engines' INT8 models

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "expect": self.expect, "precision": self.precision, "refused": self.refused,
                "timings": [{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(t).items()}
                            for t in self.timings]}

    def describe(self) -> str:
        shown = "; ".join(f"{t.engine} {t.short_ms:.3g} ms (1 x 16) / {t.long_ms:.3g} ms (8 x max_seq_len)"
                          for t in self.timings)
        refused = f"; set aside (engine_choice.refused says why): {', '.join(self.refused)}" if self.refused else ""
        what = f"{self.runtime} ({self.precision})" if self.precision != "fp32" else self.runtime
        return f"--runtime auto chose {what} for {self.expect} traffic: {shown}{refused}"


def _median_ms(runner, feeds: dict, budget_s: float) -> float:
    runner.run(feeds)  # warm-up (allocations, caches)
    seconds, started = [], time.perf_counter()
    while len(seconds) < 3 or (time.perf_counter() - started < budget_s and len(seconds) < 50):
        begin = time.perf_counter()
        runner.run(feeds)
        seconds.append(time.perf_counter() - begin)
    return 1000 * statistics.median(seconds)


def _shapes(tokenizer, names: list[str]) -> dict[str, dict]:
    encoder = FeedEncoder(tokenizer, WindowSettings(), names)
    return {"short": encoder.encode([[SHORT_TEXT]]).feeds, "long": encoder.encode([[LONG_TEXT] * 8]).feeds}


def _time(runner, shapes: dict[str, dict]) -> tuple[float, float]:
    typed = {shape: {t.name: feeds[t.name].astype(t.dtype) for t in runner.signature.inputs}
             for shape, feeds in shapes.items()}
    return _median_ms(runner, typed["short"], BUDGET_S["short"]), _median_ms(runner, typed["long"], BUDGET_S["long"])


def _score(timings: list[EngineTiming], expect: str) -> dict[str, float]:
    best_short = min(t.short_ms for t in timings)
    best_long = min(t.long_ms for t in timings)
    return {t.engine: {"short": t.short_ms / best_short, "long": t.long_ms / best_long,
                       "mixed": math.sqrt(t.short_ms / best_short * t.long_ms / best_long)}[expect] for t in timings}


def choose_engine(probe: SourceProbe, program: ProgramFiles, tokenizer, convert, threads: int, precision: str,
                  expect: str, quantize=None) -> tuple[RuntimeKind, ProgramFiles, EngineProof, EngineChoice]:
    """(the engine, the files it serves, its proof, what was measured). `convert(program)` gives
    the ONNX conversion, or None where paddle2onnx cannot convert the program. With
    `quantize(kind, onnx files) -> INT8 files` the candidates are the INT8 models of the engines
    that quantize (ONNX Runtime dynamic, OpenVINO static), each after its FP32 conversion proved
    right; the calibration gate then judges the one kept."""
    if expect not in EXPECT:
        raise UserError(f"--expect {expect!r}: use short, long, mixed or a file of typical texts")
    candidates, refused = {}, {}
    if program.format is not ProgramFormat.ONNX and quantize is None:
        try:
            proof = prove_paddle(probe, program, precision, threads, convert)
            candidates[RuntimeKind.PADDLE] = (program, proof, proof.runner)
        except UserError as exc:
            refused[RuntimeKind.PADDLE.value] = exc.message[:300]
    converted = program if program.format is ProgramFormat.ONNX else convert(program)
    for kind in (RuntimeKind.ONNXRUNTIME, RuntimeKind.OPENVINO):
        if converted is None or (precision == "bf16" and kind is RuntimeKind.ONNXRUNTIME):
            continue
        try:
            proof = prove_converted(probe, kind, converted, program, threads, precision)
            if quantize:
                files = quantize(kind, converted)
                candidates[kind] = (files, proof, create_runner(kind, files, threads, precision))
            else:
                candidates[kind] = (converted, proof, proof.runner)
        except UserError as exc:
            refused[kind.value] = exc.message[:300]
    return _fastest(candidates, refused, program, tokenizer, expect, "int8" if quantize else "fp32")


def choose_for_quantized_program(probe: SourceProbe, program: ProgramFiles, tokenizer, convert, threads: int,
                                 expect: str) -> tuple[RuntimeKind, ProgramFiles, EngineProof, EngineChoice]:
    """A quantization-aware Paddle program (quantize/dequantize ops, perhaps INT8 embeddings read
    through dequantize_log), as PaddleSlim's QAT writes it. The candidates are every engine that
    can run it: Paddle Inference; OpenVINO reading a Paddle 2.x `.pdmodel` itself; and ONNX
    Runtime and OpenVINO on paddle2onnx's conversion, where `convert(program)` makes one (it
    raises UserError where paddle2onnx cannot: 2.1 converts none of PaddleSlim's programs). Each
    is proven against the program on Paddle's native kernels (`probe`), then timed as
    choose_engine times FP32 candidates."""
    if expect not in EXPECT:
        raise UserError(f"--expect {expect!r}: use short, long, mixed or a file of typical texts")
    candidates, refused = {}, {}
    try:
        proof = prove_paddle(probe, program, "fp32", threads)
        candidates[RuntimeKind.PADDLE] = (program, proof, proof.runner)
    except UserError as exc:
        refused[RuntimeKind.PADDLE.value] = exc.message[:300]
    if program.format is ProgramFormat.LEGACY:
        _try_candidate(candidates, refused, RuntimeKind.OPENVINO, lambda: prove_converted(
            probe, RuntimeKind.OPENVINO, program, program, threads), program)
    try:
        converted = convert(program)
    except UserError as exc:  # paddle2onnx's reason
        refused[RuntimeKind.ONNXRUNTIME.value] = exc.message[:300]
    else:
        for kind in (RuntimeKind.ONNXRUNTIME, RuntimeKind.OPENVINO):
            if kind not in candidates:
                _try_candidate(candidates, refused, kind, lambda: prove_converted(probe, kind, converted, program,
                                                                                    threads), converted)
    return _fastest(candidates, refused, program, tokenizer, expect, "int8")


def _try_candidate(candidates: dict, refused: dict, kind: RuntimeKind, prove, files: ProgramFiles) -> None:
    """Add `kind` with its proof, or say why it is not one (its answers differ, or it cannot read
    the program: OpenVINO's Paddle reader has no INT8 embedding lookup)."""
    try:
        proof = prove()
    except UserError as exc:
        refused[kind.value] = exc.message[:300]
        return
    except Exception as exc:  # the engine cannot load or run the program at all
        refused[kind.value] = f"cannot run the program ({cannot_run(exc)})"
        return
    candidates[kind] = (files, proof, proof.runner)


def _fastest(candidates: dict, refused: dict, program: ProgramFiles, tokenizer, expect: str, precision: str):
    """The candidate fastest for the expected traffic, with every candidate's timings."""
    if not candidates:
        raise UserError("no engine computes what the source model does: " + "; ".join(
            f"{engine}: {why}" for engine, why in refused.items()), str(program.model_file))
    shapes = _shapes(tokenizer, sorted({t.name for _, _, r in candidates.values() for t in r.signature.inputs}))
    timings = [EngineTiming(kind.value, *_time(runner, shapes)) for kind, (_, _, runner) in candidates.items()]
    scores = _score(timings, expect)
    chosen = min(candidates, key=lambda kind: scores[kind.value])
    choice = EngineChoice(chosen.value, expect, tuple(timings), refused, precision)
    log.info("%s", choice.describe())
    files, proof, _ = candidates[chosen]
    return chosen, files, proof, choice


def expect_from_file(path: Path, tokenizer) -> str:
    """`--expect FILE`: long when half the texts fill max_seq_len, short when most fit in 32 tokens."""
    texts = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise UserError("holds no texts to tell the expected traffic from", str(path))
    lengths = tokenizer.encode(texts[:1000]).lengths
    short = sum(int(n) <= 32 for n in lengths) / len(lengths)
    full = sum(int(n) >= tokenizer.settings.max_seq_len for n in lengths) / len(lengths)
    return "long" if full >= 0.5 else "short" if short >= 0.8 else "mixed"
