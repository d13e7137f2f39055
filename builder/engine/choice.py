"""`--runtime auto` (the default): the fastest engine whose answers equal the source model's,
measured at build time on the user's own model.

Every engine that can run the program (Paddle Inference, ONNX Runtime and OpenVINO on the ONNX
conversion) is proven against the source model first (builder.engine.proof); those that differ
are set aside with their figures. The others run short texts (one at a time) and long ones (in
batches) for a moment each, the shapes changing as served traffic changes them
(builder.engine.timing), and the build keeps the fastest for the traffic it expects: `short`
(latency of single texts), `long` (throughput of full batches) or `mixed` (both, each relative
to the fastest engine at that shape).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat
from serving_core.runtime import RuntimeKind, create_runner

from builder.engine.proof import EngineProof, SourceProbe, cannot_run, prove_converted, prove_paddle
from builder.engine.timing import relative_scores, served_shapes, time_runner

log = logging.getLogger(__name__)

EXPECT = ("short", "long", "mixed")


@dataclass(frozen=True)
class EngineTiming:
    engine: str
    short_ms: float  # median of one text of 12-20 tokens (builder.engine.timing)
    long_ms: float  # median per eight max_seq_len texts, in batches of 3-8


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
        shown = "; ".join(f"{t.engine} {t.short_ms:.3g} ms (1 short text) / {t.long_ms:.3g} ms (8 x max_seq_len)"
                          for t in self.timings)
        refused = f"; set aside (engine_choice.refused says why): {', '.join(self.refused)}" if self.refused else ""
        what = f"{self.runtime} ({self.precision})" if self.precision != "fp32" else self.runtime
        return f"--runtime auto chose {what} for {self.expect} traffic: {shown}{refused}"


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
    shapes = served_shapes(tokenizer, sorted({t.name for _, _, r in candidates.values() for t in r.signature.inputs}))
    timings = [EngineTiming(kind.value, *time_runner(runner, shapes)) for kind, (_, _, runner) in candidates.items()]
    scores = relative_scores({t.engine: (t.short_ms, t.long_ms) for t in timings}, expect)
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
