"""`builder build --target paddle-serving`: the same model as a Paddle Serving pipeline service.

Rendered from the same EnsembleSpec as the Triton repository (service.json holds it), so
both targets serve the same answers. Layout of `<output>/<name>/`:

    config.yml                    pipeline config (ports, workers, op batching, model conf)
    service.py                    the WebService (model_repository/paddle_serving/service.py)
    serving_adapter.py            runs PIR / ONNX programs for the pipeline (LocalPredictor cannot)
    service.json                  the build spec (serving_core.spec) and max_texts, read by service.py
    serving_core/                 tokenizer and decoders, shared with the Triton steps
    serving_server/               program, params, vocab.txt, serving_server_conf(.stream).prototxt
    serving_client/               serving_client_conf(.stream).prototxt
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramSignature
from serving_core.spec import EnsembleSpec

from builder.staging import BACKEND_DIR, CORE_DIR, COPY_IGNORE, swap_in

@dataclass(frozen=True)
class PipelineOptions:
    rpc_port: int = 18090
    http_port: int = 18082
    worker_num: int = 16  # gRPC threads: requests in flight at once (auto-batching needs several)
    concurrency: int = 1
    batch_size: int = 8  # server-side auto-batching of requests
    auto_batching_timeout_ms: int = 2
    max_texts: int = 64  # texts one request may carry; more are refused with err_no 400


def _config_yml(name: str, options: PipelineOptions, num_threads: int, fetch: list[str]) -> str:
    """The pipeline config. JSON is valid YAML, so it is written with json (no templates)."""
    config = {
        "rpc_port": options.rpc_port, "http_port": options.http_port, "worker_num": options.worker_num,
        "dag": {"is_thread_op": True, "retry": 1, "use_profile": False, "tracer": {"interval_s": -1}},
        "op": {name: {
            "concurrency": options.concurrency, "batch_size": options.batch_size,
            "auto_batching_timeout": options.auto_batching_timeout_ms,
            "local_service_conf": {"model_config": "serving_server", "client_type": "local_predictor",
                                   "device_type": 0, "devices": "", "thread_num": num_threads,
                                   "fetch_list": fetch, "ir_optim": True},
        }},
    }
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def write_paddle_serving(spec: EnsembleSpec, program: ProgramFiles, signature: ProgramSignature, vocab_file: Path,
                         target: Path, options: PipelineOptions, overwrite: bool) -> Path:
    """Write the service directory `target` atomically (staging dir, then rename)."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise UserError("already exists; pass --overwrite to replace it", str(target))
    service = {"spec": spec.to_json(), "max_texts": options.max_texts}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    root = staging / "service"
    try:
        server_dir, client_dir = root / "serving_server", root / "serving_client"
        server_dir.mkdir(parents=True)
        client_dir.mkdir()
        shutil.copy2(program.model_file, server_dir / program.model_file.name)
        if program.params_file:
            shutil.copy2(program.params_file, server_dir / program.params_file.name)
        shutil.copy2(vocab_file, server_dir / spec.tokenizer.vocab_file)
        shutil.copy2(BACKEND_DIR / "paddle_serving" / "service.py", root / "service.py")
        for module in ("serving_adapter.py", "front_door.py"):
            shutil.copy2(BACKEND_DIR / "paddle_serving" / module, root / module)
        shutil.copytree(CORE_DIR, root / "serving_core", ignore=COPY_IGNORE)
        (root / "service.json").write_text(json.dumps(service, indent=2, ensure_ascii=False), encoding="utf-8")
        (root / "config.yml").write_text(_config_yml(spec.name, options, spec.model.num_threads,
                                                      [t.name for t in spec.program_outputs]), encoding="utf-8")
        _write_prototxt(signature, server_dir, client_dir, staging)
        swap_in(staging, target.parent, {"service": target.name})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_prototxt(signature: ProgramSignature, server_dir: Path, client_dir: Path, staging: Path) -> None:
    def tensor(spec) -> dict:
        return {"name": spec.name, "dtype": spec.dtype if spec.dtype != "float16" else "float32",
                "shape": [d if d > 0 else -1 for d in spec.shape[1:]]}

    spec_file = staging / "prototxt_spec.json"
    spec_file.write_text(json.dumps({"feeds": [tensor(t) for t in signature.inputs],
                                     "fetches": [tensor(t) for t in signature.outputs],
                                     "server_dir": str(server_dir), "client_dir": str(client_dir)}), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "builder.paddle_serving.prototxt", str(spec_file)],
                          capture_output=True, text=True)
    spec_file.unlink()
    if done.returncode != 0:
        raise UserError(f"writing Paddle Serving prototxt failed (is Paddle Serving installed? "
                        f"scripts/install_paddle_serving.py):\n{done.stderr[-2000:]}")


