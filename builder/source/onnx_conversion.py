"""paddle2onnx, run in a child process: on a program it cannot convert it may abort the whole
process (quantization-aware programs: "Only support e4m3 or e5m2"; `dequantize_log`: "unsupported
operators"), which must fail the conversion, not the build. The child can be started ahead of its
program (`converter_ready`), and conversions are kept in $ERNIE_SERVING_EXPORT_CACHE where set."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat

from builder.phases import ChildProcess, phase

log = logging.getLogger(__name__)

TIMEOUT_S = 1800  # a conversion that runs longer than this is stuck


def convert_to_onnx(program: ProgramFiles, output_file: Path, opset: int = 14) -> ProgramFiles:
    """The program as ONNX (paddle2onnx without its optimizer, which pip-installs packages at run
    time); a UserError with paddle2onnx's own reason where it cannot convert it."""
    if program.format is ProgramFormat.ONNX:
        return program
    output_file = Path(output_file)
    output_file.unlink(missing_ok=True)
    cached = _cached(program, opset)
    if cached is not None and cached.is_file():
        log.info("reusing the ONNX conversion of %s from %s", program.model_file.name, cached.parent)
        shutil.copyfile(cached, output_file)
        return ProgramFiles(ProgramFormat.ONNX, output_file, None)
    log.info("converting %s to ONNX (opset %d)", program.model_file.name, opset)
    request = json.dumps([str(program.model_file), str(program.params_file), str(output_file), opset])
    try:
        with phase("convert"):
            result = (_WARM.pop() if _WARM else _start()).finish(request, TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"paddle2onnx did not finish converting the program in {TIMEOUT_S} s",
                        str(program.model_file)) from exc
    if result.returncode != 0 or not output_file.is_file():
        raise UserError(f"paddle2onnx cannot convert this program ({_reason(result)})", str(program.model_file))
    if cached is not None:
        _keep(output_file, cached)
    return ProgramFiles(ProgramFormat.ONNX, output_file, None)


def _cached(program: ProgramFiles, opset: int) -> Path | None:
    """Where $ERNIE_SERVING_EXPORT_CACHE keeps this program's conversion (one per content and
    opset, as exports are kept: the test suite converts the same exports dozens of times)."""
    from builder.source.export import EXPORT_CACHE_ENV

    cache = os.environ.get(EXPORT_CACHE_ENV)
    if not cache:
        return None
    digest = hashlib.sha256(f"onnx:{opset}".encode())
    for path in (program.model_file, program.params_file):
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return Path(cache) / f"onnx-{digest.hexdigest()[:32]}" / "model.onnx"


def _keep(converted: Path, cached: Path) -> None:
    """Copy a conversion into the cache whole (renamed into place), or not at all."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_name(f".{cached.name}.{os.getpid()}")
    try:
        shutil.copyfile(converted, staging)
        staging.rename(cached)
    except OSError:  # a full or read-only cache costs the next build a conversion, nothing else
        staging.unlink(missing_ok=True)


_WARM: list[ChildProcess] = []  # a child started ahead by converter_ready(), waiting for its request


def _start() -> ChildProcess:
    # The child is forked from a process whose Rust tokenizer may have run threads: saying so
    # (TOKENIZERS_PARALLELISM) keeps the tokenizer from warning in every build; the child execs at once.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    return ChildProcess([sys.executable, "-m", __name__])


@contextlib.contextmanager
def converter_ready():
    """Start paddle2onnx's child now: its imports (half of a conversion's time on ERNIE 3.0 Medium)
    overlap what the build does before it converts. A child not asked for is stopped at the end.
    Nothing is started where conversions are cached (most are reused there)."""
    from builder.source.export import EXPORT_CACHE_ENV

    if not os.environ.get(EXPORT_CACHE_ENV):
        _WARM.append(_start())
    try:
        yield
    finally:
        while _WARM:
            _WARM.pop().kill()


def _reason(result: subprocess.CompletedProcess) -> str:
    """paddle2onnx's last error line, else its exit status."""
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    status = f"exit status {result.returncode}" if result.returncode >= 0 else f"aborted by signal {-result.returncode}"
    return f"{errors[-1][:300]}; {status}" if errors else status


def _convert() -> None:
    """The child: paddle2onnx itself, on the [model, params, output, opset] it reads from stdin
    (nothing read: not needed after all)."""
    import paddle2onnx

    line = sys.stdin.readline()
    if not line.strip():
        return
    model_file, params_file, output_file, opset = json.loads(line)
    paddle2onnx.export(model_file, params_file, save_file=output_file, opset_version=int(opset),
                       optimize_tool="None", verbose=False)


if __name__ == "__main__":
    _convert()
