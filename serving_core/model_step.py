"""Settings of the model step (the ERNIE program inside Triton)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .program import ProgramFiles


@dataclass(frozen=True)
class ModelStepSettings:
    """Runtime, files (relative to the version directory), threads and padding per input."""

    runtime: str = "paddle"
    program_format: str = "pir"
    model_file: str = "inference.json"
    params_file: str = ""
    num_threads: int = 1
    precision: str = "fp32"  # paddle runtime: "bf16" runs oneDNN bfloat16 kernels (AMX / avx512_bf16)
    onednn: bool = True  # paddle runtime: False runs Paddle's native CPU kernels (the build's choice when
    # oneDNN's answers differ from the source model's)
    pad_values: dict[str, int] = field(default_factory=dict)
    max_batch_tokens: int = 4096  # run larger batches in groups of at most this many padded tokens (0: off)
    # Request checks (serving_core.feed_checks): values of each input lie in [0, limit), at most
    # max_seq_len positions and max_windows windows per text (0: unchecked).
    value_limits: dict[str, int] = field(default_factory=dict)
    max_seq_len: int = 0
    max_windows: int = 0
    # INT8 weights over the full 8-bit range (built on a CPU with VNNI or AMX, or --quantize-reduce-range
    # off): on a CPU without either, its INT8 kernels may saturate, and the step says so when it loads.
    int8_full_range: bool = False
    # Pad each engine batch to a bucket (serving_core.shape_buckets, builder --shape-buckets): lengths to a
    # multiple of this many tokens, rows to 1, 2, 3, 4, 6, 8, 12, ...; 0: batches run as they come.
    bucket_length_step: int = 0
    warm_up_tokens: int = 0  # with buckets: at load, run every bucket of at most this many tokens once


def cpu_warning(settings: ModelStepSettings, flags: frozenset[str] | None = None) -> str | None:
    """What a step should log when it loads on a CPU its program was not quantized for, else None."""
    from .runtime import cpu_has_int8_dot

    if not settings.int8_full_range or cpu_has_int8_dot(flags):
        return None
    return ("this model's INT8 weights use the full 8-bit range, which needs a CPU with VNNI or AMX; this CPU has "
            "neither, and its INT8 kernels may saturate and change answers: rebuild it on this CPU, or with "
            "--quantize-reduce-range on")


def step_program(settings: ModelStepSettings, directory) -> "ProgramFiles":
    """The program files the model step's settings name in `directory`."""
    from .program import ProgramFiles, ProgramFormat

    return ProgramFiles(ProgramFormat(settings.program_format), Path(directory) / settings.model_file,
                        Path(directory) / settings.params_file if settings.params_file else None)


def create_step_runner(settings: ModelStepSettings, directory: Path, num_threads: int | None = None,
                       warn: Callable[[str], None] = logging.getLogger(__name__).warning,
                       log: Callable[[str], None] = logging.getLogger(__name__).info, bucketed: bool = True):
    """The runner the model step runs: its program in `directory` (the version directory, or a
    Paddle Serving service's serving_server/), on its runtime, threads, precision and kernels,
    padding batches to its shape buckets and warming them (unless `bucketed` is False: the bare
    engine); `warn` gets the `cpu_warning`, if any, and `log` what the warm-up did."""
    from .runtime import RuntimeKind, create_runner
    from .shape_buckets import BucketedRunner, ShapeBuckets

    warning = cpu_warning(settings)
    if warning:
        warn(warning)
    runner = create_runner(RuntimeKind(settings.runtime), step_program(settings, directory),
                           num_threads or settings.num_threads, settings.precision, settings.onednn)
    if not bucketed or not settings.bucket_length_step or not settings.max_seq_len:
        return runner
    runner = BucketedRunner(runner, ShapeBuckets(settings.bucket_length_step, settings.max_seq_len,
                                                 settings.max_batch_tokens), settings.pad_values)
    if settings.warm_up_tokens:
        shapes, seconds = runner.warm_up(settings.warm_up_tokens)
        log(f"warmed {shapes} batch shapes (lengths in steps of {settings.bucket_length_step} up to "
            f"{settings.max_seq_len}, at most {settings.warm_up_tokens} tokens) in {seconds:.1f} s")
    return runner
