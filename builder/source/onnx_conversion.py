"""paddle2onnx, run in a child process: on a program it cannot convert it may abort the whole
process (quantization-aware programs: "Only support e4m3 or e5m2"; `dequantize_log`: "unsupported
operators"), which must fail the conversion, not the build."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat

log = logging.getLogger(__name__)

TIMEOUT_S = 1800  # a conversion that runs longer than this is stuck


def convert_to_onnx(program: ProgramFiles, output_file: Path, opset: int = 14) -> ProgramFiles:
    """The program as ONNX (paddle2onnx without its optimizer, which pip-installs packages at run
    time); a UserError with paddle2onnx's own reason where it cannot convert it."""
    if program.format is ProgramFormat.ONNX:
        return program
    log.info("converting %s to ONNX (opset %d)", program.model_file.name, opset)
    output_file = Path(output_file)
    output_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", __name__, str(program.model_file), str(program.params_file), str(output_file),
               str(opset)]
    # The child is forked from a process whose Rust tokenizer may have run threads: saying so
    # (TOKENIZERS_PARALLELISM) keeps the tokenizer from warning in every build; the child execs at once.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"paddle2onnx did not finish converting the program in {TIMEOUT_S} s",
                        str(program.model_file)) from exc
    if result.returncode != 0 or not output_file.is_file():
        raise UserError(f"paddle2onnx cannot convert this program ({_reason(result)})", str(program.model_file))
    return ProgramFiles(ProgramFormat.ONNX, output_file, None)


def _reason(result: subprocess.CompletedProcess) -> str:
    """paddle2onnx's last error line, else its exit status."""
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    status = f"exit status {result.returncode}" if result.returncode >= 0 else f"aborted by signal {-result.returncode}"
    return f"{errors[-1][:300]}; {status}" if errors else status


def _convert(model_file: str, params_file: str, output_file: str, opset: str) -> None:
    """The child: paddle2onnx itself."""
    import paddle2onnx

    paddle2onnx.export(model_file, params_file, save_file=output_file, opset_version=int(opset),
                       optimize_tool="None", verbose=False)


if __name__ == "__main__":
    _convert(*sys.argv[1:])
