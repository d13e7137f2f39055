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
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from serving_core.errors import UserError
from serving_core.spec import MODEL_VERSION, EnsembleSpec

from builder.triton.config import parse, render
from builder.triton.repository import MANIFEST, PUBLISH_RECORD, VERSION_MARKER, file_records, read_build
from builder.triton.stores import LocalStore, S3Store
from builder.triton.target import direct_model_name

Store = LocalStore | S3Store

RECORD = PUBLISH_RECORD
PARAM_VERSION = "published_version"  # the public models' parameter: the version they serve


def version_name(name: str, version: int) -> str:
    """The ensemble name of one published version of `name` (read_build follows the same rule)."""
    return f"{name}_v{version}"


def version_owner(model: str, names) -> tuple[str, int] | None:
    """(name, version) when `model` is one of the models of a published version of one of `names`."""
    for name in names:
        head = model[len(name) + 2:].split("_", 1)[0] if model.startswith(f"{name}_v") else ""
        if head.isdigit() and not head.startswith("0"):
            return name, int(head)
    return None


@dataclass(frozen=True)
class PublishRecord:
    """published.json: which version of `name` serves, and the versions kept (oldest first)."""

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


def read_record(store: Store, name: str) -> PublishRecord | None:
    text = store.read_text(f"{name}/{RECORD}")
    if text is None:
        return None
    try:
        return PublishRecord.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"unreadable publish record ({exc}); restore it from a backup or publish under another name",
                        f"{store.display}/{name}/{RECORD}") from exc


def version_models(store: Store, name: str, version: int) -> list[str]:
    """The model directories of one published version, as they are in the repository."""
    return [m for m in store.model_names() if version_owner(m, [name]) == (name, version)]


def versions_present(store: Store, name: str) -> list[int]:
    """Every version of `name` with a model in the repository (complete or not)."""
    return sorted({owner[1] for m in store.model_names() if (owner := version_owner(m, [name])) is not None})


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


def stage_version(build: Path, name: str, version: int, staging: Path) -> list[str]:
    """Write the build's ensemble `name` into `staging` renamed to version `version`: configs
    through Triton's schema, the spec renamed, every file recorded again in its build.json.
    Returns the model names written."""
    spec, record = read_build(build, name)
    target = version_name(name, version)
    old_names = [name, *spec.step_names]
    if (Path(build) / direct_model_name(name)).is_dir():
        old_names.append(direct_model_name(name))
    names = {old: target + old[len(name):] for old in old_names}
    for old, new in names.items():
        shutil.copytree(Path(build) / old, staging / new,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", MANIFEST))
        config_file = staging / new / "config.pbtxt"
        config_file.write_text(render(_renamed_config(parse(config_file.read_text(encoding="utf-8")), names)),
                               encoding="utf-8")
    renamed = EnsembleSpec.from_json({**spec.to_json(), "name": target})
    manifest = {**record, "spec": renamed.to_json(), "published_from": str(Path(build).resolve()),
                "files": file_records(staging, list(names.values()))}
    (staging / target / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return list(names.values())


def add_version(build: Path, name: str, store: Store, version: int) -> list[str]:
    """Add the build's ensemble to the repository as version `version`; returns its model names."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.publish-", dir=store.staging_parent()))
    try:
        models = stage_version(build, name, version, staging)
        store.add_models(staging, models)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return models


def version_build(store: Store, name: str, version: int) -> tuple[EnsembleSpec, dict]:
    """(the spec, the build record) of one published version."""
    ensemble = version_name(name, version)
    text = store.read_text(f"{ensemble}/{MANIFEST}")
    if text is None:
        raise UserError(f"version {version} of {name} has no {MANIFEST}", f"{store.display}/{ensemble}")
    record = json.loads(text)
    return EnsembleSpec.from_json(record["spec"]), record


def _config(store: Store, model: str) -> mc.ModelConfig | None:
    text = store.read_text(f"{model}/config.pbtxt")
    return None if text is None else parse(text)


def public_config(store: Store, name: str, version: int) -> mc.ModelConfig:
    """The public ensemble `name` serving `version`: that version's ensemble config renamed, its
    parameters telling which version it is."""
    ensemble = version_name(name, version)
    public = _renamed_config(_config(store, ensemble), {ensemble: name})
    public.parameters[PARAM_VERSION].string_value = str(version)
    return public


def public_direct_config(store: Store, name: str, version: int) -> mc.ModelConfig | None:
    """The public `<name>_direct` serving `version` (None where that version has no direct model):
    that version's direct config renamed, Triton's version policy set to `version`, whose
    directory `add_direct_version` filled."""
    versioned = direct_model_name(version_name(name, version))
    config = _config(store, versioned)
    if config is None:
        return None
    public = _renamed_config(config, {versioned: direct_model_name(name)})
    public.version_policy.specific.versions[:] = [version]
    public.parameters[PARAM_VERSION].string_value = str(version)
    return public


def add_direct_version(store: Store, name: str, version: int) -> None:
    """`<name>_direct/<version>/`: the files of that version's direct model (hard links on disk)."""
    store.copy_tree(f"{direct_model_name(version_name(name, version))}/{MODEL_VERSION}",
                    f"{direct_model_name(name)}/{version}")


def write_public(store: Store, config: mc.ModelConfig, record: PublishRecord) -> None:
    """The public ensemble's directory as a restart must find it: its config, then the record."""
    if not store.exists(f"{record.name}/{MODEL_VERSION}/{VERSION_MARKER}"):
        store.write_text(f"{record.name}/{MODEL_VERSION}/{VERSION_MARKER}",
                         "keeps this version directory in object stores\n")
    store.write_text(f"{record.name}/config.pbtxt", render(config))
    store.write_text(f"{record.name}/{RECORD}", json.dumps(record.to_json(), indent=2, ensure_ascii=False))


def write_config(store: Store, config: mc.ModelConfig) -> None:
    store.write_text(f"{config.name}/config.pbtxt", render(config))


def remove_version(store: Store, name: str, version: int) -> list[str]:
    """Delete one version's model directories and its directory of the public direct model;
    returns the model names."""
    models = version_models(store, name, version)
    for model in models:
        store.remove_tree(model)
    store.remove_tree(f"{direct_model_name(name)}/{version}")
    return models


def startup_models(repository: Path | str) -> tuple[str, ...]:
    """What a server loads at start: every model ("*"), except that of a published name only the
    public models (Triton loads the live version's steps with the public ensemble)."""
    from builder.triton.stores import open_store

    store = open_store(repository)
    names = store.model_names()
    published = [n for n in names if store.exists(f"{n}/{RECORD}")]
    if not published:
        return ("*",)
    return tuple(model for model in names if version_owner(model, published) is None)
