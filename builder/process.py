"""The life cycle both bundled servers share: a child process in its own session."""
from __future__ import annotations

import logging
import os
import signal
import subprocess

log = logging.getLogger(__name__)


class ServerProcess:
    """start() and wait_ready() are the subclass's; stop(), is_running() and `with` are here."""

    STOP_SIGNAL = signal.SIGINT  # the graceful stop
    STOP_GROUP = False  # send it to the whole process group, not just the main process
    _process: subprocess.Popen | None = None

    def start(self):
        raise NotImplementedError

    def wait_ready(self, timeout: float = 180.0) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The server's main process (its children are in its process group)."""
        return self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """The graceful signal, then SIGKILL for the process group if it does not exit in time."""
        if not self.is_running():
            return
        log.info("stopping %s", type(self).__name__)
        if self.STOP_GROUP:
            os.killpg(self._process.pid, self.STOP_SIGNAL)
        else:
            self._process.send_signal(self.STOP_SIGNAL)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
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
