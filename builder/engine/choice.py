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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat
from serving_core.runtime import RuntimeKind, create_runner

from builder.engine.proof import EngineProof, SourceProbe, cannot_run, prove_converted, prove_paddle
from builder.engine.timing import EngineOverMemory, EngineTiming, Race, memory_limit_mb
from builder.phases import phase

log = logging.getLogger(__name__)


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
        shown = "; ".join(t.describe() for t in self.timings)
        refused = f"; set aside (engine_choice.refused says why): {', '.join(self.refused)}" if self.refused else ""
        what = f"{self.runtime} ({self.precision})" if self.precision != "fp32" else self.runtime
        return f"--runtime auto chose {what} for {self.expect} traffic: {shown}{refused}"


def choose_engine(probe: SourceProbe, program: ProgramFiles, tokenizer, convert, threads: int, precision: str,
                  expect: str, quantize=None) -> tuple[RuntimeKind, ProgramFiles, EngineProof, EngineChoice]:
    """(the engine, the files it serves, its proof, what was measured). `convert(program)` gives
    the ONNX conversion, or None where paddle2onnx cannot convert the program. With
    `quantize(kind, onnx files) -> INT8 files` the candidates are the INT8 models of the engines
    that quantize (ONNX Runtime dynamic, OpenVINO static), each after its FP32 conversion proved
    right; the calibration gate then judges the one kept. Engines are proven and timed one at a
    time, the conversion's first (ONNX Runtime's figures confirm Paddle's native kernels)."""
    race = Race(tokenizer, expect, memory_limit_mb(program))
    proofs, served, refused = {}, {}, {}
    converted = program if program.format is ProgramFormat.ONNX else convert(program)
    onnx_figures = None
    for kind in (RuntimeKind.ONNXRUNTIME, RuntimeKind.OPENVINO):
        if converted is None or (precision == "bf16" and kind is RuntimeKind.ONNXRUNTIME):
            continue
        try:
            if quantize:
                proof = prove_converted(probe, kind, converted, program, threads, precision)
                files = quantize(kind, converted)
                proof = replace(proof, timing=_timed(race, kind, files, threads, precision))
            else:
                proof, files = prove_converted(probe, kind, converted, program, threads, precision, race), converted
        except UserError as exc:
            refused[kind.value] = exc.message[:300]
            continue
        except EngineOverMemory as exc:  # its INT8 model
            refused[kind.value] = f"{exc}; --runtime {kind.value} serves it anyway"[:300]
            continue
        proofs[kind], served[kind] = proof, files
        onnx_figures = proof.checked[-1] if kind is RuntimeKind.ONNXRUNTIME else onnx_figures
    if program.format is not ProgramFormat.ONNX and quantize is None:
        try:
            proofs[RuntimeKind.PADDLE] = prove_paddle(probe, program, precision, threads, convert, race=race,
                                                      onnx=onnx_figures)
            served[RuntimeKind.PADDLE] = program
        except UserError as exc:
            refused[RuntimeKind.PADDLE.value] = exc.message[:300]
    return _fastest(proofs, served, refused, program, race, "int8" if quantize else "fp32")


def _timed(race: Race, kind: RuntimeKind, files: ProgramFiles, threads: int, precision: str):
    runner = create_runner(kind, files, threads, precision)
    with phase("time engines"):
        return race.time(kind.value, runner)


def choose_for_quantized_program(probe: SourceProbe, program: ProgramFiles, tokenizer, convert, threads: int,
                                 expect: str) -> tuple[RuntimeKind, ProgramFiles, EngineProof, EngineChoice]:
    """A quantization-aware Paddle program (quantize/dequantize ops, perhaps INT8 embeddings read
    through dequantize_log), as PaddleSlim's QAT writes it. The candidates are every engine that
    can run it: Paddle Inference; OpenVINO reading a Paddle 2.x `.pdmodel` itself; and ONNX
    Runtime and OpenVINO on paddle2onnx's conversion, where `convert(program)` makes one (it
    raises UserError where paddle2onnx cannot: 2.1 converts none of PaddleSlim's programs). Each
    is proven against the program on Paddle's native kernels (`probe`), then timed as
    choose_engine times FP32 candidates."""
    race = Race(tokenizer, expect, memory_limit_mb(program))
    proofs, served, refused = {}, {}, {}
    _try_candidate(proofs, served, refused, RuntimeKind.PADDLE,
                   lambda: prove_paddle(probe, program, "fp32", threads, race=race), program)
    if program.format is ProgramFormat.LEGACY:
        _try_candidate(proofs, served, refused, RuntimeKind.OPENVINO, lambda: prove_converted(
            probe, RuntimeKind.OPENVINO, program, program, threads, race=race), program)
    try:
        converted = convert(program)
    except UserError as exc:  # paddle2onnx's reason
        refused[RuntimeKind.ONNXRUNTIME.value] = exc.message[:300]
    else:
        for kind in (RuntimeKind.ONNXRUNTIME, RuntimeKind.OPENVINO):
            if kind not in proofs:
                _try_candidate(proofs, served, refused, kind, lambda: prove_converted(probe, kind, converted, program,
                                                                                      threads, race=race), converted)
    return _fastest(proofs, served, refused, program, race, "int8")


def _try_candidate(proofs: dict, served: dict, refused: dict, kind: RuntimeKind, prove, files: ProgramFiles) -> None:
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
    proofs[kind], served[kind] = proof, files


def _fastest(proofs: dict, served: dict, refused: dict, program: ProgramFiles, race: Race, precision: str):
    """The proven engine fastest for the expected traffic, with every engine's timing (paddle's:
    its served kernels')."""
    if not proofs:
        raise UserError("no engine computes what the source model does: " + "; ".join(
            f"{engine}: {why}" for engine, why in refused.items()), str(program.model_file))
    chosen = min(proofs, key=lambda kind: proofs[kind].timing.score(race.expect))
    choice = EngineChoice(chosen.value, race.expect, tuple(p.timing for p in proofs.values()), refused, precision)
    log.info("%s", choice.describe())
    return chosen, served[chosen], proofs[chosen], choice


def expect_from_file(path: Path, tokenizer) -> str:
    """`--expect FILE`: long when half the texts fill max_seq_len, short when most fit in 32 tokens."""
    texts = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise UserError("holds no texts to tell the expected traffic from", str(path))
    lengths = tokenizer.encode(texts[:1000]).lengths
    short = sum(int(n) <= 32 for n in lengths) / len(lengths)
    full = sum(int(n) >= tokenizer.settings.max_seq_len for n in lengths) / len(lengths)
    return "long" if full >= 0.5 else "short" if short >= 0.8 else "mixed"
