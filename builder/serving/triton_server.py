"""Run the `tritonserver` binary shipped in the nvidia-pytriton wheel on a model repository.

What pytriton itself does, for a plain repository: copy the backends into a writable
directory with the Python backend stub for the steps' interpreter (this one by default),
put the wheel's shared libraries and that interpreter's libpython on LD_LIBRARY_PATH, and
point the stub at its site-packages so the backends can import paddle, tokenizers and numpy.
The repository may be a local directory or an object-store URL Triton reads itself (s3://).
"""
from __future__ import annotations

import logging
import os
import shutil
import secrets
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from serving_core.drain import DrainOptions, DrainReport, drain
from serving_core.errors import ServerError
from serving_core.health import ADMIN_HEADER

from builder.serving.process import ServerProcess, connect_host, require_free_ports

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


def _pytriton_dirs() -> tuple[Path, Path]:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("nvidia-pytriton is not installed; it carries the bundled tritonserver "
                          "(pip install nvidia-pytriton==0.7.0)")
    package = Path(list(spec.submodule_search_locations)[0])
    return package / "tritonserver", package.parent / "nvidia_pytriton.libs"


@dataclass(frozen=True)
class StepPython:
    """The interpreter the Python steps run in: its version (which stub), the directory of its
    libpython (the stub links it) and its site-packages (what the steps import)."""

    executable: Path
    version: str
    libdir: str
    site_packages: tuple[str, ...]

    @classmethod
    def of(cls, executable: Path | str | None = None) -> "StepPython":
        if executable is None or Path(executable) == Path(sys.executable):
            return cls(Path(sys.executable), f"{sys.version_info.major}.{sys.version_info.minor}",
                       sysconfig.get_config_var("LIBDIR") or "",
                       tuple(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])))
        probe = ("import json, sys, sysconfig; p = sysconfig.get_paths(); print(json.dumps(["
                 "f'{sys.version_info[0]}.{sys.version_info[1]}', sysconfig.get_config_var('LIBDIR') or '', "
                 "[p['purelib'], p['platlib']]]))")
        try:
            done = subprocess.run([str(executable), "-c", probe], capture_output=True, text=True, timeout=60)
        except OSError as exc:
            raise ServerError(f"cannot run the steps' Python {executable}: {exc}") from exc
        if done.returncode != 0:
            raise ServerError(f"cannot run the steps' Python {executable}: {done.stderr[-500:]}")
        import json

        version, libdir, site = json.loads(done.stdout)
        return cls(Path(executable), version, libdir, tuple(dict.fromkeys(site)))


def backends_cache_dir(version: str | None = None) -> Path:
    """Where the backends copy lives: under the user's own cache directory, never a shared /tmp."""
    root = os.environ.get("ERNIE_SERVING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ernie-serving")
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        bundled = package_version("nvidia-pytriton")
    except PackageNotFoundError:
        bundled = "unknown"
    # One copy per Python and per bundled Triton: an upgraded wheel never runs an old stub.
    version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(root) / f"backends-py{version}-pytriton{bundled}"


def check_private(path: Path) -> None:
    """Refuse to run what another user could have written: `path` must be this user's, not a
    symlink, and not writable by group or others."""
    info = path.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022 or stat.S_ISLNK(info.st_mode):
        raise ServerError(f"{path}: owned by uid {info.st_uid} with mode {stat.filemode(info.st_mode)}; "
                          f"the Triton backends are run from here only when this user (uid {os.getuid()}) "
                          "owns it and nobody else can write it: remove it, or set ERNIE_SERVING_CACHE")


def prepare_backends(cache_dir: Path | None = None, version: str | None = None) -> Path:
    """A private backends directory with the stub for Python `version` (default: this one);
    built once, then reused."""
    triton_dir, _ = _pytriton_dirs()
    version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"the bundled Triton has no Python backend stub for Python {version}")
    cache_dir = cache_dir or backends_cache_dir(version)
    cache_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(cache_dir.parent)
    python_dir = cache_dir / "python"
    if not (python_dir / "triton_python_backend_stub").is_file():
        staging = Path(tempfile.mkdtemp(dir=cache_dir.parent, prefix=cache_dir.name + "."))
        shutil.copytree(triton_dir / "backends", staging, dirs_exist_ok=True)
        shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
        try:
            staging.rename(cache_dir)
        except OSError:  # another process prepared it first
            shutil.rmtree(staging, ignore_errors=True)
    for item in (cache_dir, python_dir, python_dir / "triton_python_backend_stub", python_dir / "libtriton_python.so"):
        check_private(item)
    return cache_dir


REMOTE_SCHEMES = ("s3://", "gs://", "as://")  # repositories Triton reads from object storage itself


def is_remote(repository: Path | str) -> bool:
    return str(repository).startswith(REMOTE_SCHEMES)


EXIT_TIMEOUT_S = 5  # Triton's own wait at stop, for models still loaded (its default: 30)

# Triton APIs that change or expose the server itself: only callers holding the admin key.
RESTRICTED_APIS = ("shared-memory", "model-repository", "logging", "trace")


class TritonServer(ServerProcess):
    """A tritonserver process: start(), wait_ready(), stop(); also a context manager.

    It listens on `host` only (loopback by default), loads every model in explicit
    model-control mode (so that a dead step can be reloaded), and restricts the admin APIs
    (RESTRICTED_APIS) to requests with the header ADMIN_HEADER: `admin_key`.
    """

    def __init__(self, repository: Path | str, ports: ServerPorts = ServerPorts(), log_file: Path | None = None,
                 extra_args: tuple[str, ...] = (), host: str = "127.0.0.1", admin_key: str | None = None,
                 load_models: tuple[str, ...] = ("*",), python: Path | str | None = None,
                 startup_timeout: float = 600.0):
        remote = is_remote(repository)
        self.repository = str(repository) if remote else Path(repository).resolve()
        self.python = StepPython.of(python)
        self.ports = ports
        self.log_file = Path(log_file) if log_file else Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.extra_args = extra_args
        self.host = host
        self.admin_key = admin_key or secrets.token_urlsafe(24)
        self.load_models = load_models
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"{connect_host(self.host)}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"{connect_host(self.host)}:{self.ports.http}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers of a gRPC call to a restricted API (Triton prefixes the key on gRPC)."""
        return {f"triton-grpc-protocol-{ADMIN_HEADER}": self.admin_key}

    @property
    def admin_http_headers(self) -> dict[str, str]:
        """Headers of an HTTP call to a restricted API."""
        return {ADMIN_HEADER: self.admin_key}

    def command(self) -> list[str]:
        triton_dir, _ = _pytriton_dirs()
        restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={self.admin_key}"
        return [str(triton_dir / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={prepare_backends(version=self.python.version)}",
                f"--http-address={self.host}", f"--http-port={self.ports.http}",
                f"--grpc-address={self.host}", f"--grpc-port={self.ports.grpc}",
                f"--metrics-address={self.host}", f"--metrics-port={self.ports.metrics}",
                f"--grpc-restricted-protocol={restricted}", f"--http-restricted-api={restricted}",
                "--model-control-mode=explicit", *(f"--load-model={name}" for name in self.load_models),
                # Requests in flight are answered by a drain before the stop (builder serve); what Triton
                # would otherwise wait for is a model whose stub died and was reloaded, which it never
                # frees (30 s by default, at every stop after a recovery).
                f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--log-verbose=0", *self.extra_args]

    def environment(self) -> dict[str, str]:
        _, libs_dir = _pytriton_dirs()
        env = dict(os.environ)
        # The stub links libpython of its version: found in the steps' interpreter's LIBDIR.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs_dir), self.python.libdir,
                                                               env.get("LD_LIBRARY_PATH")]))
        # The stub embeds Python with an isolated config (PYTHONPATH is ignored): it finds its
        # prefix, and so that environment's site-packages, from the first python3 on PATH.
        env["PATH"] = os.pathsep.join([str(self.python.executable.parent), env.get("PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, [*self.python.site_packages,
                                                                        env.get("PYTHONPATH")])))
        env.setdefault("GLOG_minloglevel", "2")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self) -> "TritonServer":
        if not is_remote(self.repository) and not self.repository.is_dir():
            raise ServerError(f"{self.repository}: no such model repository")
        require_free_ports(self.host, {"gRPC": self.ports.grpc, "HTTP": self.ports.http,
                                        "metrics": self.ports.metrics})
        log.info("starting tritonserver on %s (gRPC %d, HTTP %d), log: %s", self.repository,
                 self.ports.grpc, self.ports.http, self.log_file)
        with open(self.log_file, "wb") as sink:
            self._process = self.spawn(self.command(), env=self.environment(), stdout=sink,
                                       stderr=subprocess.STDOUT)
        return self

    def drain(self, options: DrainOptions = DrainOptions()) -> DrainReport:
        """Report not ready, then answer every request in flight on the ensembles (serving_core.drain)."""
        return drain(f"http://{self.http_url}", self.admin_http_headers, options, log=log.info)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        noise = ("NVML", "DCGM", "GPU metrics", "CUDA driver", "CudaDriverHelper")
        kept = [line for line in text if not any(n in line for n in noise)]
        # Triton's error lines (E...) first: a long start-up log pushes them out of the tail.
        errors = [line[:2000] for line in kept if line.startswith("E")][-10:]
        tail = "\n".join(kept)[-4000:]
        return "\n".join([*errors, "...", tail]) if errors else tail

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server and every model in the repository report ready; past
        `timeout` (default: the server's startup_timeout) stop it and raise with the log's end."""
        import tritonclient.grpc as grpcclient

        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        client = grpcclient.InferenceServerClient(self.grpc_url)
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self._process.returncode if self._process else None}"
                                  f"; log ({self.log_file}):\n{self.log_tail()}")
            try:
                if client.is_server_ready():
                    log.info("tritonserver is ready (%s)", ", ".join(m.name for m in client.get_model_repository_index(
                        headers=self.admin_headers).models))
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"tritonserver not ready after {timeout:.0f} s (the start-up deadline, --startup-timeout): "
                          f"a model is still loading or hangs (a Python step without its model.py hangs in "
                          f"Triton's stub; `builder check` finds that); last lines of its log "
                          f"({self.log_file}):\n{self.log_tail()}")
