"""Deploying as platforms do: a repository uploaded file by file to a local S3 server (moto, from
PyPI) and served and verified from there; two Triton replicas of that s3:// repository behind
nginx (deploy/nginx.conf, Debian's nginx) with one replica killed under load; the container's
Python (3.12) with the Dockerfile's own package list; and the shipped compose topology."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.build import build
from builder.serving.object_store import upload_repository
from builder.options import BuildOptions
from builder.triton.repository import VERSION_MARKER
from builder.serving.triton_server import ServerPorts, TritonServer
from clients.seq_cls import SeqClsClient
from serving_core.errors import ClientError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from .local_s3 import local_s3

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TEXTS = ["打开空调", "播放周杰伦的花心", "导航到北京西站", "把温度调到22度"]


@pytest.fixture(scope="module")
def repository(example_model, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("deploy") / "repo"
    build(example_model, output, BuildOptions(task=Task.SEQ_CLS, name="intent"), show_progress=False)
    build(example_model, output, BuildOptions(task=Task.SEQ_CLS, name="intent_ort", runtime=RuntimeKind.ONNXRUNTIME),
          show_progress=False)
    build(example_model, output, BuildOptions(task=Task.SEQ_CLS, name="intent_openvino", runtime=RuntimeKind.OPENVINO),
          show_progress=False)
    return output


@pytest.fixture(scope="module")
def local_answers(repository):
    with TritonServer(repository, ServerPorts.free()) as server:
        return {model: [r.to_json() for r in SeqClsClient(server.grpc_url, model).classify(TEXTS)]
                for model in ("intent", "intent_ort", "intent_openvino")}


@pytest.fixture(scope="module")
def s3_repository(repository):
    """The repository uploaded file by file to a local S3 server; yields its s3:// URL."""
    with local_s3() as bucket:
        url = f"{bucket}/repo"
        assert upload_repository(repository, url) > 0
        yield url


def test_empty_version_directories_carry_a_marker(repository):
    for ensemble in ("intent", "intent_ort"):
        assert [p.name for p in (repository / ensemble / "1").iterdir()] == [VERSION_MARKER]


def test_repository_served_and_verified_from_s3(s3_repository, local_answers, example_model):
    started = time.monotonic()
    with TritonServer(s3_repository, ServerPorts.free()) as server:
        print(f"\nloaded from S3 in {time.monotonic() - started:.1f} s")
        for model, expected in local_answers.items():
            assert [r.to_json() for r in SeqClsClient(server.grpc_url, model).classify(TEXTS)] == expected
    done = subprocess.run([sys.executable, "-m", "builder", "verify", s3_repository, "--name", "intent",
                           "--model", str(example_model)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert '"passed": true' in done.stdout


def _nginx_config(tmp_path: Path, listen: int, upstreams: list[str]) -> Path:
    """deploy/nginx.conf with its addresses pointed at the local replicas (nothing else changed)."""
    text = (DEPLOY / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server triton-\d+:8001 (.*);$", text, flags=re.M)
    assert len(servers) == 2, "deploy/nginx.conf names two replicas"
    text = re.sub(r"^(\s*)server triton-0:8001 .*$", lambda m: "\n".join(
        f"{m.group(1)}server {address} {servers[0]};" for address in upstreams), text, flags=re.M)
    text = re.sub(r"^\s*server triton-1:8001 .*\n", "", text, flags=re.M)
    text = text.replace("listen 8001 http2;", f"listen 127.0.0.1:{listen} http2;")
    text = text.replace("pid /tmp/ernie-nginx.pid;", f"pid {tmp_path / 'nginx.pid'};")
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    return config


def test_two_replicas_behind_nginx_survive_losing_one(s3_repository, local_answers, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).is_file():
        pytest.fail("nginx is not installed (scripts/setup.sh installs Debian's nginx-light)")
    replicas = [TritonServer(s3_repository, ServerPorts.free()) for _ in range(2)]
    for replica in replicas:
        replica.start()
    balancer = None
    try:
        for replica in replicas:
            replica.wait_ready()
        listen = ServerPorts.free().grpc
        config = _nginx_config(tmp_path, listen, [replica.grpc_url for replica in replicas])
        checked = subprocess.run([nginx, "-t", "-c", str(config), "-p", str(tmp_path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        balancer = subprocess.Popen([nginx, "-c", str(config), "-g", "daemon off;", "-p", str(tmp_path)],
                                    stderr=subprocess.PIPE)
        url = f"127.0.0.1:{listen}"
        deadline = time.monotonic() + 30
        while True:
            try:
                client = SeqClsClient(url, "intent")
                break
            except ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        expected = local_answers["intent"]
        outcomes: list[tuple[float, bool]] = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    ok = [r.to_json() for r in client.classify(TEXTS)] == expected
                except ClientError:
                    ok = False
                outcomes.append((time.monotonic(), ok))

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(3)
        killed_at = time.monotonic()
        os.killpg(replicas[0].pid, signal.SIGKILL)
        time.sleep(6)
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
        before = [ok for t, ok in outcomes if t < killed_at]
        after = [ok for t, ok in outcomes if t >= killed_at]
        lost = after.count(False)
        print(f"\nrequests: {len(before)} before the kill, {len(after)} after, {lost} failed "
              f"({before.count(False)} failed before)")
        assert before and all(before)
        assert after.count(True) >= 10 and lost <= 2 * len(workers)  # at most what was in flight, twice
        assert all(after[-5:])  # the balancer settled on the live replica
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(timeout=30)
        for replica in replicas:
            replica.stop()


def test_compose_topology_matches_the_balancer():
    import yaml

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replicas = sorted(name for name in services if name.startswith("triton-"))
    upstreams = re.findall(r"server (triton-\d+):8001", (DEPLOY / "nginx.conf").read_text())
    assert replicas == sorted(upstreams) and len(replicas) >= 2
    for name in replicas:
        service = services[name]
        assert service["environment"]["ERNIE_MODEL_REPOSITORY"].startswith("s3://s3:")
        assert service["shm_size"] and "s3" in service["depends_on"]
    assert "8001:8001" in services["balancer"]["ports"]
    assert "./nginx.conf:/etc/nginx/ernie.conf:ro" in services["balancer"]["volumes"]


def dockerfile_packages() -> list[str]:
    """The pinned packages the Dockerfile installs (its `pip install` line), read from the file."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if "pip install" in line]
    return [token for token in line.split() if "==" in token]


def _container_python() -> Path:
    """A Python 3.12 environment holding only the Dockerfile's packages (cached between runs)."""
    import hashlib

    candidates = [*sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")), shutil.which("python3.12")]
    found = next((c for c in candidates if c and subprocess.run([str(c), "-c", "pass"]).returncode == 0), None)
    if found is None:
        pytest.fail("no Python 3.12 here (the NGC 25.xx image's Python); install python3.12")
    packages = dockerfile_packages()
    key = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("ERNIE_SERVING_CACHE") or Path.home() / ".cache" / "ernie-serving")
    venv = cache / f"container-py3.12-{key}"
    if not (venv / "ready").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(found), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *packages], check=True,
                       timeout=1800)
        (venv / "ready").write_text(" ".join(packages))
    return venv / "bin" / "python"


def test_dockerfile_installs_what_the_steps_import():
    packages = {p.split("==")[0] for p in dockerfile_packages()}
    assert {"paddlepaddle", "onnxruntime", "onnx", "openvino", "tokenizers", "numpy"} <= packages
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"tritonserver:25\.\d\d-py3", text) and "USER 10001" in text and "HEALTHCHECK" in text
    assert ".venv" in (ROOT / ".dockerignore").read_text().split()


def test_container_python_serves_both_runtimes(repository, local_answers):
    python = _container_python()
    with TritonServer(repository, ServerPorts.free(), python=python) as server:
        assert server.python.version == "3.12"
        for model, expected in local_answers.items():
            served = [r.to_json() for r in SeqClsClient(server.grpc_url, model).classify(TEXTS)]
            assert [r["label"] for r in served] == [r["label"] for r in expected]
            for got, want in zip(served, expected):
                assert abs(got["confidence"] - want["confidence"]) < 1e-4


def test_container_checks_the_repository_before_triton_starts(repository, tmp_path):
    """The Dockerfile's command runs `python3 -m builder check` from its copy of the project first:
    here with the container's Python and package list, on the repository and on an altered copy."""
    command = (DEPLOY / "Dockerfile").read_text().split("CMD", 1)[1]
    triton = command.index("exec python3 -m serving_core.drain -- tritonserver")  # Triton under the drain
    assert command.index("python3 -m builder check") < triton
    python = _container_python()
    done = subprocess.run([str(python), "-m", "builder", "check", str(repository)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    altered = tmp_path / "repo"
    shutil.copytree(repository, altered)
    (altered / "intent_model" / "1" / "model.py").write_text("print('not the built step')\n")
    done = subprocess.run([str(python), "-m", "builder", "check", str(altered)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 1 and "intent_model/1/model.py" in done.stderr


def test_a_model_that_fails_to_load_does_not_take_the_others_down(repository, local_answers, tmp_path):
    """The Dockerfile's --exit-on-error=false on the bundled server: a broken model beside the good
    ones leaves them serving (without it, tritonserver exits: "failed to load all models")."""
    assert "--exit-on-error=false" in (DEPLOY / "Dockerfile").read_text()
    mixed = tmp_path / "repo"
    shutil.copytree(repository, mixed)
    (mixed / "broken" / "1").mkdir(parents=True)
    (mixed / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: 1\n')
    (mixed / "broken" / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def initialize(self, args):\n        raise RuntimeError('broken on purpose')\n")
    server = TritonServer(mixed, ServerPorts.free(), extra_args=("--exit-on-error=false",)).start()
    try:
        client = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.is_running(), server.log_tail()
            try:
                client = SeqClsClient(server.grpc_url, "intent")
                if client._client.is_model_ready("intent"):
                    break
            except ClientError:
                pass
            time.sleep(1)
        assert client is not None and not client._client.is_model_ready("broken")
        assert [r.to_json() for r in client.classify(TEXTS)] == local_answers["intent"]
    finally:
        server.stop()
