"""Run the `tritonserver` binary shipped in the nvidia-pytriton wheel on a model repository.

What pytriton itself does, for a plain repository: copy the backends into a writable
directory with the Python backend stub for the running interpreter, put the wheel's
shared libraries on LD_LIBRARY_PATH, and point the stub at this environment's
site-packages so the backends can import paddle, tokenizers and numpy.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .process import ServerProcess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> "ServerPorts":
        """Three ports the OS says are free now (for tests and throwaway servers)."""
        sockets = [socket.socket() for _ in range(3)]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in sockets))
        finally:
            for s in sockets:
                s.close()


class ServerError(RuntimeError):
    """The server did not start or a model did not load; the message has the log's tail."""


def _pytriton_dirs() -> tuple[Path, Path]:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("nvidia-pytriton is not installed; it carries the bundled tritonserver "
                          "(pip install nvidia-pytriton==0.7.0)")
    package = Path(list(spec.submodule_search_locations)[0])
    return package / "tritonserver", package.parent / "nvidia_pytriton.libs"


def prepare_backends(cache_dir: Path | None = None) -> Path:
    """A writable backends directory with the stub for this Python; built once, then reused."""
    triton_dir, _ = _pytriton_dirs()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"the bundled Triton has no Python backend stub for Python {version}")
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / f"ernie-serving-backends-{os.getuid()}-{version}"
    python_dir = cache_dir / "python"
    if not (python_dir / "triton_python_backend_stub").is_file():
        staging = Path(tempfile.mkdtemp(dir=cache_dir.parent, prefix=cache_dir.name + "."))
        shutil.copytree(triton_dir / "backends", staging, dirs_exist_ok=True)
        shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
        try:
            staging.rename(cache_dir)
        except OSError:  # another process prepared it first
            shutil.rmtree(staging, ignore_errors=True)
    return cache_dir


class TritonServer(ServerProcess):
    """A tritonserver process: start(), wait_ready(), stop(); also a context manager."""

    def __init__(self, repository: Path, ports: ServerPorts = ServerPorts(), log_file: Path | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.repository = Path(repository).resolve()
        self.ports = ports
        self.log_file = Path(log_file) if log_file else Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.extra_args = extra_args
        self._process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    def command(self) -> list[str]:
        triton_dir, _ = _pytriton_dirs()
        return [str(triton_dir / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={prepare_backends()}", f"--http-port={self.ports.http}",
                f"--grpc-port={self.ports.grpc}", f"--metrics-port={self.ports.metrics}",
                "--log-verbose=0", *self.extra_args]

    def environment(self) -> dict[str, str]:
        _, libs_dir = _pytriton_dirs()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs_dir), env.get("LD_LIBRARY_PATH")]))
        # The stub embeds Python with an isolated config (PYTHONPATH is ignored): it finds its
        # prefix, and so this environment's site-packages, from the first python3 on PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, [*site, env.get("PYTHONPATH")])))
        env.setdefault("GLOG_minloglevel", "2")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self) -> "TritonServer":
        if not self.repository.is_dir():
            raise ServerError(f"{self.repository}: no such model repository")
        log.info("starting tritonserver on %s (gRPC %d, HTTP %d), log: %s", self.repository,
                 self.ports.grpc, self.ports.http, self.log_file)
        with open(self.log_file, "wb") as sink:
            self._process = subprocess.Popen(self.command(), env=self.environment(), stdout=sink,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        noise = ("NVML", "DCGM", "GPU metrics", "CUDA driver")
        return "\n".join(line for line in text if not any(n in line for n in noise))[-6000:] if text else ""

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until the server and every model in the repository report ready."""
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + timeout
        client = grpcclient.InferenceServerClient(self.grpc_url)
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self._process.returncode if self._process else None}"
                                  f"; log ({self.log_file}):\n{self.log_tail()}")
            try:
                if client.is_server_ready():
                    log.info("tritonserver is ready (%s)", ", ".join(
                        m.name for m in client.get_model_repository_index().models))
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"tritonserver not ready after {timeout:.0f} s; log ({self.log_file}):\n{self.log_tail()}")
