"""Run a generated Paddle Serving pipeline service (service.py) and wait until it answers."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from builder.serving.process import ServerProcess, connect_host, require_free_ports
from serving_core.errors import ServerError

log = logging.getLogger(__name__)


def is_pipeline_service(directory: Path) -> bool:
    return (Path(directory) / "service.py").is_file() and (Path(directory) / "service.json").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PipelineService(ServerProcess):
    """`python service.py` in its directory: start(), wait_ready(), stop(); also a context manager."""

    STOP_SIGNAL = signal.SIGTERM  # the service drains requests in flight, then exits

    def __init__(self, directory: Path, rpc_port: int | None = None, http_port: int | None = None,
                 log_file: Path | None = None, host: str = "127.0.0.1"):
        self.directory = Path(directory).resolve()
        self.host = host
        self.rpc_port, self.http_port = rpc_port or _free_port(), http_port or _free_port()
        self.log_file = Path(log_file) if log_file else Path(tempfile.mkstemp(prefix="pipeline-", suffix=".log")[1])
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{connect_host(self.host)}:{self.rpc_port}"

    @property
    def http_url(self) -> str:
        return f"{connect_host(self.host)}:{self.http_port}"


    def start(self) -> "PipelineService":
        if not is_pipeline_service(self.directory):
            raise ServerError(f"{self.directory}: not a service built with --target paddle-serving")
        require_free_ports(self.host, {"gRPC": self.rpc_port, "HTTP": self.http_port})
        env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python", GLOG_minloglevel="2")
        log.info("starting Paddle Serving pipeline %s (gRPC %d, HTTP %d), log: %s", self.directory.name,
                 self.rpc_port, self.http_port, self.log_file)
        with open(self.log_file, "wb") as sink:
            self._process = self.spawn(
                [sys.executable, "service.py", "--rpc-port", str(self.rpc_port), "--http-port", str(self.http_port),
                 "--host", self.host], cwd=self.directory, env=env, stdout=sink, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerError(f"the pipeline service exited ({self._process.returncode}); log:\n{self._tail()}")
            if "[front_door] serving" in self.log_file.read_text(errors="replace"):
                with socket.socket() as s:
                    if s.connect_ex((connect_host(self.host), self.rpc_port)) == 0:
                        log.info("pipeline %s is ready", self.directory.name)
                        return
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"the pipeline service was not ready after {timeout:.0f} s; log:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]


@contextmanager
def pipeline_services(directories: dict):
    """Several services started together (each loads while the others do), yielded as
    {key: PipelineService} once all are ready; all are stopped on the way out."""
    services = {key: PipelineService(directory) for key, directory in directories.items()}
    for service in services.values():
        service.start()
    try:
        for service in services.values():
            service.wait_ready()
        yield services
    finally:
        for service in services.values():
            service.stop()
