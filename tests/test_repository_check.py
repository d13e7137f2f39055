"""Repositories in the states they arrive in after copies, syncs and shared storage: each is
refused (`builder check`, and `builder serve` before it starts anything) with the file at fault
and what to do, in seconds; a hang that slips past is ended by the start-up deadline; a full
disk fails a build as bad input and leaves the repository as it was."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.build import build
from builder.triton.check import check_location, check_repository
from builder.options import BuildOptions
from builder.triton.repository import MANIFEST
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from .local_s3 import local_s3

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def built(example_model, tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("check") / "repo"
    build(example_model, repository, BuildOptions(task=Task.SEQ_CLS, name="intent", max_seq_len=64,
                                                  runtime=RuntimeKind.PADDLE), show_progress=False)
    return repository


@pytest.fixture
def repo(built, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(built, copy)
    return copy


def _builder(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, timeout=timeout)


def test_the_build_records_every_file_and_a_fresh_repository_passes(built):
    record = json.loads((built / "intent" / MANIFEST).read_text())
    files = record["files"]
    assert "intent_model/1/inference.pdiparams" in files and "intent_postprocess/1/model.py" in files
    assert any(p.startswith("intent_tokenizer/1/serving_core/") for p in files)
    assert all(len(f["sha256"]) == 64 and f["size"] >= 0 for f in files.values())
    done = _builder("check", str(built))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


@pytest.mark.parametrize("case, kind, path, words", [
    ("no_model_py", "missing", "intent_postprocess/1/model.py", "Triton would hang"),
    ("truncated", "changed", "intent_model/1/inference.pdiparams", "the build recorded"),
    ("altered_code", "changed", "intent_model/1/model.py", "content differs"),
    ("extra", "extra", "intent_model/1/evil.py", "did not write it"),
    ("bad_config", "config", "intent_tokenizer/config.pbtxt", "not a Triton model config"),
    ("broken_wiring", "wiring", "intent/config.pbtxt", "no model named"),
])
def test_a_repository_not_as_built_is_refused_by_check_and_serve(repo, case, kind, path, words):
    target = repo / path
    if case == "no_model_py":
        target.unlink()
    elif case == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif case == "altered_code":  # the same length: only the digest tells
        text = target.read_text()
        target.write_text(text.replace("import", "imp0rt", 1) if "import" in text else text[::-1])
    elif case == "extra":
        target.write_text("import os\n")
    elif case == "bad_config":
        target.write_text(target.read_text().replace("max_batch_size", "max_batch_sise"))
    elif case == "broken_wiring":
        target.write_text(target.read_text().replace('model_name: "intent_postprocess"',
                                                     'model_name: "intent_postprocessor"'))
    report = check_repository(repo)
    assert [(p.kind, p.path) for p in report.problems if p.path == path] == [(kind, path)], report.summary()
    assert words in report.summary()
    done = _builder("check", str(repo))
    assert done.returncode == 1 and path in done.stdout
    started = time.monotonic()
    done = _builder("serve", str(repo), "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0")
    assert done.returncode == 2 and path in done.stderr and "not served" in done.stderr
    assert time.monotonic() - started < 60  # refused before anything starts


def test_a_truncated_weights_file_names_both_sizes(repo):
    weights = repo / "intent_model" / "1" / "inference.pdiparams"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    def shown(n: int) -> str:
        return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"

    (problem,) = check_repository(repo).problems
    assert problem.detail == f"it is {shown(size // 2)}, the build recorded {shown(size)}"
    assert problem.fix == "copy it again or rebuild"


def test_an_edited_config_is_allowed_and_a_meant_code_edit_is_accepted(repo):
    config = repo / "intent_model" / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1", "count: 2"))
    report = check_repository(repo)
    assert report.ok and report.edited_configs == ("intent_model/config.pbtxt",)
    step = repo / "intent_postprocess" / "1" / "model.py"
    step.write_text(step.read_text() + "\n# patched by the operator\n")
    assert not check_repository(repo).ok
    done = _builder("check", str(repo), "--accept")
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((repo / "intent" / MANIFEST).read_text())
    assert record["accepted"][-1]["files"] == ["intent_model/config.pbtxt", "intent_postprocess/1/model.py"]
    assert check_repository(repo).ok
    (repo / "intent_postprocess" / "1" / "model.py").unlink()  # a missing file is never accepted
    assert _builder("check", str(repo), "--accept").returncode == 1


def test_a_repository_built_before_files_were_recorded_is_refused_until_accepted(repo):
    path = repo / "intent" / MANIFEST
    record = json.loads(path.read_text())
    del record["files"]
    path.write_text(json.dumps(record))
    assert [p.kind for p in check_repository(repo).problems] == ["unrecorded"]
    assert _builder("check", str(repo), "--accept").returncode == 0
    assert check_repository(repo).ok


@pytest.mark.server
def test_the_start_up_deadline_ends_a_hang_with_the_log(repo):
    from builder.serving.triton_server import ServerPorts, TritonServer
    from serving_core.errors import ServerError

    (repo / "intent_postprocess" / "1" / "model.py").unlink()  # what check refuses; here Triton gets it
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"not ready after 20 s \(the start-up deadline"):
        with TritonServer(repo, ServerPorts.free(), startup_timeout=20):
            pass
    assert time.monotonic() - started < 90


@pytest.mark.server
def test_check_reads_an_s3_repository(built, tmp_path):
    from builder.serving.object_store import upload_file, upload_repository

    with local_s3() as bucket:
        url = f"{bucket}/repo"
        upload_repository(built, url)
        assert check_location(url).ok
        assert _builder("check", url).returncode == 0
        altered = tmp_path / "model.py"
        altered.write_text((built / "intent_model" / "1" / "model.py").read_text() + "\n# altered in the bucket\n")
        upload_file(altered, url, "intent_model/1/model.py")
        done = _builder("check", url)
        assert done.returncode == 1 and "intent_model/1/model.py" in done.stdout
        done = _builder("serve", url, "--grpc-port", "0")
        assert done.returncode == 2 and "intent_model/1/model.py" in done.stderr


def test_a_full_disk_fails_the_build_as_bad_input_and_keeps_the_repository(example_model, built, tmp_path):
    """A tmpfs just larger than the repository: the build's staging copy cannot fit."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    size = sum(p.stat().st_size for p in built.rglob("*") if p.is_file())
    options = f"size={size + 2 * 2**20}"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        shutil.copytree(built, mount / "repo")
        before = {p: p.read_bytes() for p in (mount / "repo").rglob("*") if p.is_file()}
        done = _builder("build", "--task", "seq_cls", "--model", str(example_model), "--output", str(mount / "repo"),
                        "--name", "intent", "--max-seq-len", "64", "--runtime", "paddle", "--overwrite", timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "No space left on device" in done.stderr and "the build needs about" in done.stderr
        assert str(mount) in done.stderr
        assert {p: p.read_bytes() for p in (mount / "repo").rglob("*") if p.is_file()} == before
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_read_only_output_fails_the_build_as_bad_input(example_model, tmp_path):
    mount = tmp_path / "read_only"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("mounting a read-only tmpfs needs root")
    try:
        done = _builder("build", "--task", "seq_cls", "--model", str(example_model), "--output",
                        str(mount / "repo"), "--max-seq-len", "64", timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Read-only file system" in done.stderr and "choose an --output you can write" in done.stderr
        assert not any(mount.iterdir())
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
