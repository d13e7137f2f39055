"""The life cycle both bundled servers share: a child process in its own session."""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess

from serving_core.errors import ServerError

log = logging.getLogger(__name__)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: its own session, and SIGTERM when the parent dies (even by
    SIGKILL). SIGTERM, not SIGKILL: the server then stops its own children (Triton's backend
    stubs; Paddle Serving drains), where a killed server would leave them running."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_in_use(host: str, port: int) -> bool:
    """Whether `port` on `host` cannot be bound now (something listens there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As servers bind: a closed connection's TIME_WAIT does not count, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def connect_host(host: str) -> str:
    """The address a local client dials for a server bound to `host` (a wildcard: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def require_free_ports(host: str, ports: dict[str, int]) -> None:
    """Refuse to start when one of the named ports on `host` is taken (before anything says ready)."""
    for name, port in ports.items():
        if port_in_use(host, port):
            raise ServerError(f"{name} port {port} on {host} is in use (another server?); "
                              "choose free ports or stop the other server")


class ServerProcess:
    """start() and wait_ready() are the subclass's; stop(), is_running() and `with` are here."""

    STOP_SIGNAL = signal.SIGINT  # the graceful stop
    _process: subprocess.Popen | None = None

    def start(self):
        raise NotImplementedError

    @staticmethod
    def spawn(command: list[str], **kwargs) -> subprocess.Popen:
        """Start the server in its own process group, stopped if this process dies."""
        return subprocess.Popen(command, preexec_fn=_die_with_parent, **kwargs)

    def wait_ready(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The server's main process (its children are in its process group)."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """The graceful signal, then SIGKILL if it does not exit in time; then whatever is left of
        its process group (a server stopped while it loads can leave Triton's backend stubs)."""
        if self._process is None:
            return
        if self.is_running():
            log.info("stopping %s", type(self).__name__)
            self._process.send_signal(self.STOP_SIGNAL)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:  # nothing left
            pass
        self._process.wait()

    def __enter__(self):
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
