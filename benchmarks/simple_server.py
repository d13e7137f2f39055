"""Run PaddleNLP's SimpleServer (`paddlenlp server`) on one static model and wait until it answers."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.serving.process import ServerProcess
from serving_core.errors import ServerError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SimpleServerProcess(ServerProcess):
    STOP_SIGNAL = signal.SIGTERM
    STOP_GROUP = True

    def __init__(self, task: str, model_dir: Path, tokenizer_dir: Path, port: int):
        self.task, self.port = task, port
        self.model_dir, self.tokenizer_dir = Path(model_dir).resolve(), Path(tokenizer_dir).resolve()
        self.log_file = Path(tempfile.mkstemp(prefix="simple-server-", suffix=".log")[1])
        self._process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.task}"

    def start(self) -> "SimpleServerProcess":
        cli = shutil.which("paddlenlp", path=str(Path(sys.executable).parent)) or "paddlenlp"
        env = dict(os.environ, ERNIE_BENCH_TASK=self.task, ERNIE_BENCH_MODEL_DIR=str(self.model_dir),
                   ERNIE_BENCH_TOKENIZER_DIR=str(self.tokenizer_dir), GLOG_minloglevel="2")
        with open(self.log_file, "wb") as sink:
            self._process = subprocess.Popen(
                [cli, "server", "benchmarks.simple_server_app:app", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1"],
                cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerError(f"paddlenlp server exited ({self._process.returncode}); log:\n{self._tail()}")
            try:
                requests.get(f"http://127.0.0.1:{self.port}/docs", timeout=2).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.5)
        self.stop()
        raise ServerError(f"paddlenlp server was not ready after {timeout:.0f} s; log:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]
