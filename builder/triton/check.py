"""`builder check`: a repository is whole and unaltered before it serves.

The build records every file of every model it writes (path, size, sha256) in the ensemble's
build.json (`files`). The check reads a repository as Triton would and compares:
- structure: every model directory's config.pbtxt parses against Triton's schema
  (model_config.proto), every ensemble's wiring holds, every model has a version directory and
  every Python step its `model.py` (without it Triton 2.51 hangs at start-up, silently);
- content: every recorded file is there with its size and sha256, and no file was added.
  Configs are the exception: operators edit instance counts and batching by hand, so an edited
  config.pbtxt is reported as edited and held to the schema and the wiring instead.
An edit that is meant (a patched step, say) is accepted with `builder check --accept`, which
records the files as they are now, and when, in build.json. Models no build recorded (written
by hand) get the structure check only.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving_core.spec import EnsembleSpec

from builder.triton.repository import MANIFEST, digest, file_records, model_files
from builder.triton.config import parse
from builder.triton.wiring import wiring_problems

CONFIG = "config.pbtxt"


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the repository
    kind: str  # missing, changed, extra, config, wiring, structure, unrecorded
    detail: str
    fix: str

    def describe(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}; {self.fix}"


@dataclass(frozen=True)
class CheckReport:
    repository: str
    ensembles: tuple[str, ...]  # built ensembles whose files were compared with their record
    files: int  # files compared
    problems: tuple[Problem, ...]
    edited_configs: tuple[str, ...] = ()  # configs that differ from the build's (schema and wiring hold)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"repository": self.repository, "ok": self.ok, "ensembles": list(self.ensembles),
                "files_checked": self.files, "edited_configs": list(self.edited_configs),
                "problems": [asdict(p) for p in self.problems]}

    def summary(self) -> str:
        head = (f"{self.repository}: {'whole and as built' if self.ok else f'{len(self.problems)} problem(s)'} "
                f"({len(self.ensembles)} ensemble(s), {self.files} files checked)")
        return "\n  ".join([head, *(p.describe() for p in self.problems)])


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size} bytes"


def _content_problems(root: Path, record: dict, models: list[str]) -> tuple[list[Problem], list[str], int]:
    recorded = record["files"]
    problems, edited = [], []
    for path, expected in recorded.items():
        file = root / path
        if not file.is_file():
            problems.append(Problem(path, "missing", "the build wrote it and it is not there",
                                    "copy the repository again (an interrupted copy or sync?) or rebuild"))
            continue
        size = file.stat().st_size
        if size == expected["size"] and digest(file) == expected["sha256"]:
            continue
        if path.endswith("/" + CONFIG) and path.count("/") == 1:
            edited.append(path)  # held to the schema and the wiring instead
        elif size != expected["size"]:
            problems.append(Problem(path, "changed", f"it is {_mb(size)}, the build recorded {_mb(expected['size'])}",
                                    "copy it again or rebuild"))
        else:
            problems.append(Problem(path, "changed", "its content differs from what the build wrote (sha256)",
                                    "copy it again or rebuild; an edit you mean: `builder check --accept`"))
    for path in sorted(set(p for m in models for p in model_files(root, m)) - set(recorded)):
        problems.append(Problem(path, "extra", "the build did not write it",
                                "remove it; a file you mean to add: `builder check --accept`"))
    return problems, edited, len(recorded)


def _structure(root: Path) -> tuple[dict[str, mc.ModelConfig], list[Problem]]:
    configs, problems = {}, []
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = f"{directory.name}/{CONFIG}"
        if not (root / path).is_file():
            problems.append(Problem(path, "missing", "a model directory without its config",
                                    "copy the repository again or rebuild"))
            continue
        try:
            config = configs[directory.name] = parse((root / path).read_text(encoding="utf-8"))
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            problems.append(Problem(path, "config", f"not a Triton model config ({exc})",
                                    "fix the edit against Triton's model_config.proto, or rebuild"))
            continue
        if config.name and config.name != directory.name:
            problems.append(Problem(path, "config", f"names the model {config.name!r}, its directory is "
                                    f"{directory.name!r}", "make them agree"))
        versions = [v for v in directory.iterdir() if v.is_dir() and v.name.isdigit()]
        if not versions:
            problems.append(Problem(f"{directory.name}/1", "missing", "no version directory",
                                    "copy the repository again (object stores drop empty folders) or rebuild"))
        if config.backend == "python":
            for version in versions:
                if not (version / "model.py").is_file():
                    problems.append(Problem(f"{directory.name}/{version.name}/model.py", "missing",
                                            "a Python step without its code (Triton would hang at start-up)",
                                            "copy the repository again or rebuild"))
    for name, config in configs.items():
        if config.platform == "ensemble":
            problems += [Problem(f"{name}/{CONFIG}", "wiring", problem, "undo the edit or rebuild")
                         for problem in wiring_problems(config, configs)]
    return configs, problems


def _built(root: Path) -> dict[str, dict]:
    records = {}
    for path in sorted(root.glob(f"*/{MANIFEST}")):
        records[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
    return records


def _ensemble_models(name: str, record: dict) -> list[str]:
    """The model directories one build wrote: the ensemble, its steps, and any model its files
    name (the `<name>_direct` model of --direct)."""
    written = sorted({path.split("/", 1)[0] for path in record.get("files", {})})
    try:
        steps = [name, *EnsembleSpec.from_json(record["spec"]).step_names]
    except (KeyError, ValueError, TypeError):  # a record of an older builder: the ensemble directory alone
        steps = [name]
    return list(dict.fromkeys([*steps, *written]))


def check_repository(root: Path, display: str | None = None) -> CheckReport:
    """Structure, then each built ensemble's files against its record."""
    root = Path(root)
    _, problems = _structure(root)
    ensembles, edited, count = [], [], 0
    for name, record in _built(root).items():
        if "files" not in record:
            problems.append(Problem(f"{name}/{MANIFEST}", "unrecorded", "built before the builder recorded files",
                                    "rebuild, or `builder check --accept` to record the files as they are"))
            continue
        found, changed, checked = _content_problems(root, record, _ensemble_models(name, record))
        problems += found
        edited += changed
        count += checked
        ensembles.append(name)
    unique, seen = [], set()
    for problem in problems:  # structure first: a missing model.py is reported once, as what Triton needs
        if (problem.path, problem.kind) not in seen:
            seen.add((problem.path, problem.kind))
            unique.append(problem)
    return CheckReport(display or str(root), tuple(ensembles), count, tuple(unique), tuple(edited))


def accept(root: Path, display: str | None = None) -> tuple[CheckReport, list[Path]]:
    """Record every built ensemble's files as they are now (structure must hold, nothing recorded
    may be missing); returns the report after and the build.json files rewritten."""
    before = check_repository(root, display)
    refused = [p for p in before.problems if p.kind not in ("changed", "extra", "unrecorded")]
    if refused:
        return before, []
    written = []
    for name, record in _built(root).items():
        models = _ensemble_models(name, record)
        now = file_records(root, models)
        changed = sorted(p for p in set(now) | set(record.get("files", {}))
                         if record.get("files", {}).get(p) != now.get(p))
        if not changed:
            continue
        record["files"] = now
        record.setdefault("accepted", []).append({
            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "files": changed})
        path = root / name / MANIFEST
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        written.append(path)
    return check_repository(root, display), written


def check_location(repository: str | Path, accept_edits: bool = False) -> CheckReport:
    """`check_repository` (or `accept`) on a directory or an s3:// repository (downloaded whole
    into a temporary directory; accepted records are uploaded back)."""
    import shutil
    import tempfile

    from serving_core.errors import UserError

    from builder.serving.object_store import download_repository, upload_file
    from builder.serving.triton_server import is_remote

    if not is_remote(repository):
        root = Path(repository)
        if not root.is_dir():
            raise UserError("is not a model repository directory", str(root))
        return accept(root)[0] if accept_edits else check_repository(root)
    local = Path(tempfile.mkdtemp(prefix="ernie-check-"))
    try:
        download_repository(str(repository), local)
        if not accept_edits:
            return check_repository(local, str(repository))
        report, written = accept(local, str(repository))
        for path in written:
            upload_file(path, str(repository), path.relative_to(local).as_posix())
        return report
    finally:
        shutil.rmtree(local, ignore_errors=True)


def require_whole(repository: str | Path) -> CheckReport:
    """The check `builder serve` runs first: a repository with problems is refused, naming them."""
    from serving_core.errors import UserError

    report = check_location(repository)
    if not report.ok:
        raise UserError("not served: the repository is not as built:\n  " + "\n  ".join(
            p.describe() for p in report.problems) + "\n(`builder check` lists the same; an edit you mean is "
            "accepted with `builder check --accept`)", str(repository))
    return report
