"""`builder publish` and `builder rollback`: a new version reaches a live server without a failed request.

A publish, holding the repository's lock:
1. checks the build as `builder check` does and adds it to the repository as the next version of
   its name (builder.triton.versions), all of its models at once, next to the live one's;
2. loads that version on the live server beside the live one: nothing routes traffic to it yet;
3. gates it there: its own ensemble answers a request, its tokenizer step turns the build's probe
   texts into the token ids the build recorded, and its model step, fed those, answers what the
   source model answered within the build's proven tolerance;
4. switches the public ensemble to it (a load with the new config: new requests go to the new
   steps, requests in flight finish on the old ones) and records which version is live;
5. unloads the old version, waiting until its requests in flight are answered, and deletes the
   versions beyond --keep.
Any failure before step 4 unloads and deletes what it added; the old version keeps serving.
A rollback is steps 2-5 for the version before the live one.
"""
from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving_core import interface
from serving_core.errors import UserError
from serving_core.health import probe_body
from serving_core.tokenization import INPUT_IDS

from builder.serving.admin import LiveServer
from builder.triton import versions
from builder.triton.stores import open_store
from builder.triton.target import direct_model_name

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PublishOptions:
    keep: int = 2  # versions kept on disk, the live one included
    grace_s: float = 30.0  # for requests in flight on the old version
    lock_wait_s: float = 0.0  # for another publish on the same repository to finish

    def __post_init__(self):
        if self.keep < 2:
            raise UserError("--keep must be at least 2: the live version and the one a rollback returns to")


@dataclass(frozen=True)
class PublishReport:
    name: str
    action: str  # publish, rollback
    live: int
    previous: int | None
    probe_difference: float
    unanswered: tuple[str, ...]  # old models still answering when the grace period ended
    removed: tuple[int, ...]
    seconds: float

    def to_json(self) -> dict:
        return {"name": self.name, "action": self.action, "live": self.live, "previous": self.previous,
                "probe_difference": float(f"{self.probe_difference:.3g}"), "unanswered": list(self.unanswered),
                "removed_versions": list(self.removed), "seconds": round(self.seconds, 2)}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def publish(build: Path, repository: str | Path, server: LiveServer, name: str | None = None,
            options: PublishOptions = PublishOptions()) -> PublishReport:
    """Add `build`'s ensemble to `repository` (a directory or s3://) as the next version of its
    name and make it the one `server` answers with (module docstring)."""
    from builder.triton.check import require_whole

    started = time.monotonic()
    build = Path(build)
    store = open_store(repository)
    name = versions.build_ensemble(build, name)
    require_whole(str(build))
    with store.lock(options.lock_wait_s):
        record = versions.read_record(store, name)
        if record is None and name in store.model_names():
            raise UserError(f"holds {name!r} as a plain build, not a published name; publish under another --name "
                            "or into a repository of published models", store.display)
        _remove_orphans(store, name, record, server, options)
        version = max([*versions.versions_present(store, name), *(record.kept if record else ())], default=0) + 1
        models = versions.add_version(build, name, store, version)
        log.info("added %s as version %d of %s: %s", build, version, name, ", ".join(models))
        try:
            difference = _load_and_gate(store, name, version, server)
        except BaseException:
            log.error("version %d of %s refused; the live version keeps serving; removing what was added",
                      version, name)
            server.unload(models, options.grace_s)
            versions.remove_version(store, name, version)
            raise
        return _switch(store, name, version, record, server, options, "publish", difference, started)


def rollback(repository: str | Path, name: str, server: LiveServer, options: PublishOptions = PublishOptions()
             ) -> PublishReport:
    """Serve the version published before the live one again (steps 2-5 of a publish)."""
    started = time.monotonic()
    store = open_store(repository)
    with store.lock(options.lock_wait_s):
        record = versions.read_record(store, name)
        if record is None:
            raise UserError(f"{name!r} was never published here: nothing to roll back to", store.display)
        earlier = [v for v in record.kept if v < record.live]
        if not earlier:
            raise UserError(f"no version of {name!r} older than the live {record.live} is kept "
                            f"(kept: {', '.join(map(str, record.kept))})", store.display)
        target = earlier[-1]
        try:
            difference = _load_and_gate(store, name, target, server)
        except BaseException:
            server.unload(versions.version_models(store, name, target), options.grace_s)
            raise
        return _switch(store, name, target, record, server, options, "rollback", difference, started)


def _remove_orphans(store, name: str, record, server: LiveServer, options: PublishOptions) -> None:
    """Versions in the repository that no record keeps (a publisher killed before its switch):
    unloaded, deleted."""
    kept = set(record.kept) if record else set()
    for version in versions.versions_present(store, name):
        if version not in kept:
            models = versions.version_models(store, name, version)
            log.warning("removing version %d of %s, left by a publish that did not finish: %s", version, name,
                        ", ".join(models))
            server.unload(models, options.grace_s)
            versions.remove_version(store, name, version)


def _load_and_gate(store, name: str, version: int, server: LiveServer) -> float:
    """Load version `version` beside the live one and hold it to its build's probe; returns the
    largest difference found. Raises UserError naming what failed."""
    ensemble = versions.version_name(name, version)
    where = f"{store.display}/{ensemble}"
    spec, record = versions.version_build(store, name, version)
    probe = record.get("probe")
    if not probe:
        raise UserError("build.json records no probe (built by an older builder): build the model again", where)
    loaded = [ensemble] + ([direct_model_name(ensemble)] if direct_model_name(ensemble) in store.model_names()
                           else [])
    for model in loaded:
        log.info("loading %s beside the live version", model)
        try:
            server.load(model)
        except RuntimeError as exc:
            raise UserError(f"the server cannot load {model}: {exc}", f"{store.display}/{model}") from exc
    for model in loaded:
        try:
            server.infer(model, probe_body(server.config(model)))
        except RuntimeError as exc:
            raise UserError(f"{model} loaded but does not answer: {exc}", f"{store.display}/{model}") from exc
    mismatched = tokenizer_mismatches(server, spec, probe)
    if mismatched:
        raise UserError(f"{spec.tokenizer_step} on the server tokenizes {len(mismatched)} of the build's probe texts "
                        f"otherwise than the build did (first: {mismatched[0]!r}): not published", where)
    difference = model_step_difference(server, spec.model_step_name, probe)
    if not difference <= probe["tolerance"]:
        raise UserError(f"{spec.model_step_name} on the server differs from the source model by {difference:.3g} "
                        f"on the build's probe texts (the build proved {probe['tolerance']:g}): not published",
                        where)
    log.info("version %d of %s answers on the server; its model step is within %.3g of the source model "
             "(allowed %g)", version, name, difference, probe["tolerance"])
    return difference


_DATATYPES = {"int64": "INT64", "int32": "INT32", "float32": "FP32"}


def tokenizer_mismatches(server: LiveServer, spec, probe: dict) -> list[str]:
    """The probe texts the tokenizer step on the server turns into other token ids than the
    build's (padding aside; a text's first window). Checked where the ensemble takes single texts
    (not QA, not text pairs) and the program reads input_ids."""
    feeds = probe["feeds"]
    if [t.name for t in spec.inputs] != [interface.TEXT] or INPUT_IDS not in feeds:
        log.info("%s: the probe's token ids are not checked for this task's inputs", spec.tokenizer_step)
        return []
    texts = probe["texts"]
    answer = server.infer(spec.tokenizer_step, {
        "inputs": [{"name": interface.TEXT, "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}],
        "outputs": [{"name": INPUT_IDS}]})
    output = next(o for o in answer["outputs"] if o["name"] == INPUT_IDS)
    served = np.asarray(output["data"], dtype=np.int64).reshape(output["shape"])
    served = served[:, 0, :] if served.ndim == 3 else served
    pad = spec.model.pad_values.get(INPUT_IDS, 0)

    def tokens(row) -> list[int]:
        values = [int(v) for v in row]
        while values and values[-1] == pad:
            values.pop()
        return values

    expected = np.asarray(feeds[INPUT_IDS]["values"], dtype=np.int64)
    return [text for text, got, want in zip(texts, served, expected) if tokens(got) != tokens(want)]


def model_step_difference(server: LiveServer, model: str, probe: dict) -> float:
    """The largest difference, relative to the probe's scale, between what `model` answers on
    the probe's feeds and the source model's recorded outputs."""
    config = server.config(model)
    rank = {i["name"]: len(i.get("dims", [])) for i in config["input"]}
    inputs = []
    for feed, item in probe["feeds"].items():
        values = np.asarray(item["values"])
        shape = list(values.shape) if rank.get(feed, 1) == 1 else [values.shape[0], 1, *values.shape[1:]]
        inputs.append({"name": feed, "shape": shape, "datatype": _DATATYPES[item["dtype"]],
                       "data": values.reshape(-1).tolist()})
    answer = server.infer(model, {"inputs": inputs, "outputs": [{"name": n} for n in probe["outputs"]]})
    served = {o["name"]: np.asarray(o["data"], dtype=np.float64) for o in answer.get("outputs", [])}
    worst = 0.0
    for output, expected in probe["outputs"].items():
        expected = np.asarray(expected, dtype=np.float64).reshape(-1)
        got = served.get(output)
        if got is None or got.size != expected.size:
            return float("inf")
        worst = max(worst, float(np.abs(got - expected).max()) if expected.size else 0.0)
    return worst / probe["scale"]


def _switch(store, name: str, version: int, record, server: LiveServer, options: PublishOptions,
            action: str, difference: float, started: float) -> PublishReport:
    """Point the public models at `version`, record it, let every other version finish what it
    holds and unload it, delete the versions beyond --keep."""
    previous = record.live if record else None
    config = versions.public_config(store, name, version)
    log.info("switching %s to version %d%s", name, version, f" (from {previous})" if previous else "")
    on_disk = sorted({*(record.kept if record else ()), version})
    # Kept: the new live version, the one it replaces (a rollback's target), then the newest others.
    order = list(dict.fromkeys([version, *([previous] if previous else []), *reversed(on_disk)]))
    removed = tuple(sorted(order[options.keep:]))
    history = (*(record.history if record else ()), {"action": action, "version": version, "at": _now()})
    new_record = versions.PublishRecord(name, version, tuple(v for v in on_disk if v not in removed), history)
    # On disk first: Triton reads the directory on a load, and a restart (or the next publish, after a
    # publisher was killed here) serves what is recorded, a version that passed its gate.
    versions.write_public(store, config, new_record)
    try:
        _switch_direct(store, name, version, server)
        server.load(name, config)
    except BaseException:
        if record is not None:
            versions.write_public(store, versions.public_config(store, name, previous), record)
        raise
    # The candidate ensemble and direct model go (the public ones serve the same steps and files);
    # every other version's models finish the requests they hold, then go too.
    candidate = versions.version_name(name, version)
    live_steps = set(versions.version_models(store, name, version)) - {candidate,
                                                                            direct_model_name(candidate)}
    loaded = [m for m, state in server.states().items() if state in ("READY", "LOADING")]
    others = [m for m in loaded if versions.version_owner(m, [name]) is not None and m not in live_steps]
    unanswered = server.unload(others, options.grace_s)
    if unanswered:
        log.warning("still answering after %g s: %s", options.grace_s, ", ".join(unanswered))
    for old_version in removed:
        log.info("deleting version %d of %s (--keep %d)", old_version, name, options.keep)
        versions.remove_version(store, name, old_version)
    log.info("%s serves version %d%s", name, version, f" (was {previous})" if previous else "")
    return PublishReport(name, action, version, previous, difference, tuple(unanswered), removed,
                         time.monotonic() - started)


def _switch_direct(store, name: str, version: int, server: LiveServer) -> None:
    """Point the public `<name>_direct` at `version` (Triton's version policy: the new version is
    loaded, then the old one unloaded once it has answered what it holds)."""
    config = versions.public_direct_config(store, name, version)
    public = direct_model_name(name)
    if config is None:
        if public in store.model_names():
            log.warning("version %d of %s has no direct model: %s is unloaded", version, name, public)
            server.unload([public], 30.0)
            store.remove_tree(public)
        return
    versions.add_direct_version(store, name, version)
    old_config = store.read_text(f"{public}/config.pbtxt")
    versions.write_config(store, config)
    try:
        server.load(public, config)
    except BaseException:
        if old_config is not None:
            store.write_text(f"{public}/config.pbtxt", old_config)
        raise
