"""Published versions in a Triton repository: each version's models side by side, one public ensemble.

Triton keeps one config per model, not per version, and a new build may change every step's
config (labels, engine, lengths); so a published version is a whole build renamed, never a
version directory of the live models:

    <name>_v<k>, <name>_v<k>_tokenizer, <name>_v<k>_model, <name>_v<k>_postprocess[, <name>_v<k>_direct]

each as `builder build` wrote it (its own build.json, every file recorded), and the public
ensemble `<name>` is a config whose steps are the live version's steps, with `published.json`
beside it: the live version and those kept. Clients call `<name>`; `builder publish` switches it
by loading it with a new config, which the server answers with at once while requests already
in flight finish on the steps they started on.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from serving_core.errors import UserError
from serving_core.spec import MODEL_VERSION, EnsembleSpec

from builder.staging import swap_in
from builder.triton.config import parse, render
from builder.triton.repository import MANIFEST, PUBLISH_RECORD, VERSION_MARKER, file_records, read_build
from builder.triton.target import direct_model_name

RECORD = PUBLISH_RECORD
PARAM_VERSION = "published_version"  # the public ensemble's parameter: the version it serves


def version_name(name: str, version: int) -> str:
    """The ensemble name of one published version of `name` (read_build follows the same rule)."""
    return f"{name}_v{version}"


@dataclass(frozen=True)
class PublishRecord:
    """published.json: which version of `name` serves, and the versions kept on disk (oldest first)."""

    name: str
    live: int
    kept: tuple[int, ...]
    history: tuple[dict, ...] = field(default=())  # {"action", "version", "at"}, newest last

    def to_json(self) -> dict:
        return {"name": self.name, "live": self.live, "kept": list(self.kept), "history": list(self.history[-50:])}

    @classmethod
    def from_json(cls, data: dict) -> "PublishRecord":
        return cls(str(data["name"]), int(data["live"]), tuple(int(v) for v in data["kept"]),
                   tuple(data.get("history", ())))


def read_record(repository: Path, name: str) -> PublishRecord | None:
    path = Path(repository) / name / RECORD
    if not path.is_file():
        return None
    try:
        return PublishRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"unreadable publish record ({exc}); restore it from a backup or publish under another name",
                        str(path)) from exc


def version_models(repository: Path, name: str, version: int) -> list[str]:
    """The model directories of one published version, as they are on disk."""
    ensemble = version_name(name, version)
    return sorted(p.name for p in Path(repository).iterdir()
                  if p.is_dir() and (p.name == ensemble or p.name.startswith(ensemble + "_")))


def versions_on_disk(repository: Path, name: str) -> list[int]:
    """Every version of `name` whose ensemble directory is in `repository`."""
    found = {version_owner(p.name, [name]) for p in Path(repository).iterdir() if p.is_dir()}
    return sorted(owner[1] for owner in found if owner is not None)


def build_ensemble(build: Path, name: str | None) -> str:
    """The ensemble of a `builder build` output to publish: `name`, or its only ensemble."""
    built = sorted(p.name for p in Path(build).iterdir() if (p / MANIFEST).is_file())
    if name is not None:
        if name not in built:
            raise UserError(f"holds no ensemble {name!r} built by `builder build` (it holds: "
                            f"{', '.join(built) or 'none'})", str(build))
        return name
    if len(built) != 1:
        raise UserError(f"holds {len(built)} built ensembles ({', '.join(built) or 'none'}); name one with --name",
                        str(build))
    return built[0]


def _renamed_config(config: mc.ModelConfig, names: dict[str, str]) -> mc.ModelConfig:
    renamed = mc.ModelConfig()
    renamed.CopyFrom(config)
    renamed.name = names[config.name]
    for step in renamed.ensemble_scheduling.step:
        step.model_name = names.get(step.model_name, step.model_name)
    return renamed


def stage_version(build: Path, name: str, version: int, staging: Path) -> tuple[list[str], EnsembleSpec]:
    """Write the build's ensemble `name` into `staging` renamed to version `version`: configs
    through Triton's schema, the spec renamed, every file recorded again in its build.json.
    Returns the model names written and the renamed spec."""
    spec, record = read_build(build, name)
    target = version_name(name, version)
    old_names = [name, *spec.step_names]
    if (Path(build) / direct_model_name(name)).is_dir():
        old_names.append(direct_model_name(name))
    names = {old: target + old[len(name):] for old in old_names}
    for old, new in names.items():
        shutil.copytree(Path(build) / old, staging / new, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                       MANIFEST))
        config_file = staging / new / "config.pbtxt"
        config_file.write_text(render(_renamed_config(parse(config_file.read_text(encoding="utf-8")), names)),
                               encoding="utf-8")
    renamed = EnsembleSpec.from_json({**spec.to_json(), "name": target})
    manifest = {**record, "spec": renamed.to_json(), "published_from": str(Path(build).resolve()),
                "files": file_records(staging, list(names.values()))}
    (staging / target / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return list(names.values()), renamed


def add_version(build: Path, name: str, repository: Path, version: int) -> list[str]:
    """Copy the build's ensemble into `repository` as version `version`, atomically: all its
    models appear at once or none does. Returns their names."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.publish-", dir=Path(repository).parent))
    try:
        models, _ = stage_version(build, name, version, staging)
        swap_in(staging, Path(repository), {m: m for m in models})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return models


def public_config(repository: Path, name: str, version: int) -> mc.ModelConfig:
    """The public ensemble `name` serving `version`: that version's ensemble config renamed, its
    parameters telling which version it is."""
    ensemble = version_name(name, version)
    config = parse((Path(repository) / ensemble / "config.pbtxt").read_text(encoding="utf-8"))
    public = _renamed_config(config, {ensemble: name})
    public.parameters[PARAM_VERSION].string_value = str(version)
    return public


def public_direct_config(repository: Path, name: str, version: int) -> mc.ModelConfig | None:
    """The public `<name>_direct` serving `version` (None where that version has no direct model):
    that version's direct config renamed, Triton's version policy set to `version`, whose
    directory `add_direct_version` filled."""
    versioned = direct_model_name(version_name(name, version))
    path = Path(repository) / versioned / "config.pbtxt"
    if not path.is_file():
        return None
    public = _renamed_config(parse(path.read_text(encoding="utf-8")), {versioned: direct_model_name(name)})
    public.version_policy.specific.versions[:] = [version]
    public.parameters[PARAM_VERSION].string_value = str(version)
    return public


def add_direct_version(repository: Path, name: str, version: int) -> bool:
    """`<name>_direct/<version>/`: the files of that version's direct model, hard-linked (copied
    across file systems); False where the version has no direct model."""
    source = Path(repository) / direct_model_name(version_name(name, version)) / MODEL_VERSION
    if not source.is_dir():
        return False
    target = Path(repository) / direct_model_name(name) / str(version)
    if target.exists():
        shutil.rmtree(target)
    staging = target.with_name(f".{version}.staging")
    shutil.rmtree(staging, ignore_errors=True)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, staging, copy_function=link, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    staging.rename(target)
    return True


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_public(repository: Path, config: mc.ModelConfig, record: PublishRecord) -> None:
    """The public ensemble's directory as a restart must find it: its config, then the record."""
    directory = Path(repository) / record.name
    (directory / MODEL_VERSION).mkdir(parents=True, exist_ok=True)
    marker = directory / MODEL_VERSION / VERSION_MARKER
    if not marker.exists():
        marker.write_text("keeps this version directory in object stores\n", encoding="utf-8")
    _write_atomically(directory / "config.pbtxt", render(config))
    _write_atomically(directory / RECORD, json.dumps(record.to_json(), indent=2, ensure_ascii=False))


def write_public_direct(repository: Path, config: mc.ModelConfig) -> None:
    _write_atomically(Path(repository) / config.name / "config.pbtxt", render(config))


def remove_version(repository: Path, name: str, version: int) -> list[str]:
    """Delete one version's model directories, and its directory of the public direct model;
    returns the model names."""
    models = version_models(repository, name, version)
    for model in models:
        shutil.rmtree(Path(repository) / model)
    shutil.rmtree(Path(repository) / direct_model_name(name) / str(version), ignore_errors=True)
    return models


def version_owner(model: str, names) -> tuple[str, int] | None:
    """(name, version) when `model` is one of the models of a published version of one of `names`."""
    for name in names:
        head = model[len(name) + 2:].split("_", 1)[0] if model.startswith(f"{name}_v") else ""
        if head.isdigit() and not head.startswith("0"):
            return name, int(head)
    return None


def startup_models(repository: Path | str) -> tuple[str, ...]:
    """What a server loads at start: every model ("*"), except that of a published name only the
    public models (Triton loads the live version's steps with the public ensemble). An object-store
    repository loads every model."""
    if str(repository).startswith(("s3://", "gs://", "as://")):
        return ("*",)
    names = sorted(p.name for p in Path(repository).iterdir() if p.is_dir() and not p.name.startswith("."))
    published = [n for n in names if read_record(repository, n) is not None]
    if not published:
        return ("*",)
    return tuple(model for model in names if version_owner(model, published) is None)
