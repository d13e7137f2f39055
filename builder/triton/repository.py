"""Write a RepositoryPlan into a Triton model repository, atomically.

Everything is written into a staging directory beside the target first. Only when the
whole ensemble is complete are its model directories moved in; a failed build leaves the
target untouched, and existing models are replaced only with `overwrite`. A repository
can hold several ensembles side by side.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

from serving_core.errors import UserError
from serving_core.spec import MODEL_VERSION, EnsembleSpec

from builder.triton.plan import RepositoryPlan
from builder.staging import BACKEND_DIR, CORE_DIR, COPY_IGNORE, swap_in
from builder.triton.config import render
from builder.triton.wiring import check_wiring

log = logging.getLogger(__name__)

MANIFEST = "build.json"  # in the ensemble's directory: how it was built
PUBLISH_RECORD = "published.json"  # in a published name's public ensemble directory (builder.triton.versions)
# Object stores keep no empty folders: an ensemble's version directory holds this file, so that
# the repository survives `aws s3 sync` or a file-by-file upload (Triton needs the `1/`).
VERSION_MARKER = ".keep"
NOT_RECORDED = ("__pycache__", ".pyc")  # what Python writes beside a step's code when it imports it


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def model_files(root: Path, model: str) -> list[str]:
    """A model directory's files (repository-relative paths), build.json and Python caches left out."""
    return sorted(p.relative_to(root).as_posix() for p in (Path(root) / model).rglob("*")
                  if p.is_file() and p.name != MANIFEST and not any(part in p.as_posix() for part in NOT_RECORDED))


def file_records(root: Path, models: list[str]) -> dict[str, dict]:
    """{path: {size, sha256}} of every file of `models` under `root`: what build.json records
    and `builder check` compares."""
    return {path: {"size": (Path(root) / path).stat().st_size, "sha256": digest(Path(root) / path)}
            for model in models for path in model_files(root, model)}


def _write_model(plan_model, directory: Path) -> None:
    version = directory / MODEL_VERSION
    version.mkdir(parents=True)
    (directory / "config.pbtxt").write_text(render(plan_model.config), encoding="utf-8")
    for name, text in plan_model.model_files.items():
        (directory / name).write_text(text, encoding="utf-8")
    for name, source in plan_model.version_files.items():
        shutil.copy2(source, version / name)
    if plan_model.backend_code:
        shutil.copy2(BACKEND_DIR / plan_model.backend_code / "model.py", version / "model.py")
        shutil.copy2(BACKEND_DIR / "triton_helpers.py", version / "triton_helpers.py")
        shutil.copytree(CORE_DIR, version / "serving_core", ignore=COPY_IGNORE)
    if not any(version.iterdir()):
        (version / VERSION_MARKER).write_text("keeps this version directory in object stores\n", encoding="utf-8")


def write_repository(plan: RepositoryPlan, output: Path, manifest: dict, overwrite: bool = False) -> list[Path]:
    """Write the plan's models into `output`; returns the model directories written. The
    ensemble's build.json holds `manifest` and every written file's size and sha256 (`files`)."""
    check_wiring(plan.ensemble(), plan.configs())
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UserError("exists and is not a directory; choose another --output", str(output))
    clashes = [m.name for m in plan.models if (output / m.name).exists()]
    if clashes and not overwrite:
        raise UserError(f"already holds {', '.join(clashes)}; pass --overwrite to replace them "
                        "(the old models stay until the new build is complete)", str(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=output.parent))
    try:
        for model in plan.models:
            _write_model(model, staging / model.name)
        record = {**manifest, "files": file_records(staging, [m.name for m in plan.models])}
        manifest_path = staging / plan.ensemble_name / MANIFEST
        manifest_path.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        output.mkdir(exist_ok=True)
        swap_in(staging, output, {m.name: m.name for m in plan.models})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [output / m.name for m in plan.models]


def read_build(repository: Path, model: str) -> tuple[EnsembleSpec, dict]:
    """(the spec, the whole record) from an ensemble's build.json; of a published name, the live version's."""
    path = Path(repository) / model / MANIFEST
    published = Path(repository) / model / PUBLISH_RECORD
    if not path.is_file() and published.is_file():  # a published name: the live version's build
        live = json.loads(published.read_text(encoding="utf-8"))["live"]
        path = Path(repository) / f"{model}_v{int(live)}" / MANIFEST
    if not path.is_file():
        raise UserError(f"no {MANIFEST}: was this ensemble built by `builder build`?", str(path.parent))
    record = json.loads(path.read_text(encoding="utf-8"))
    if "spec" not in record:
        raise UserError(f"{MANIFEST} was written by an older builder; build the model again", str(path))
    return EnsembleSpec.from_json(record["spec"]), record


def model_version_dir(repository: Path, model: str) -> Path:
    """The model step's version directory (its program files) of a built ensemble."""
    spec, _ = read_build(repository, model)
    return spec.version_dir(repository, spec.model_step_name)
