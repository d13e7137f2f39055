"""`builder build`: model directory -> Triton model repository."""
from __future__ import annotations

import datetime
import json
import logging
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from serving_core.errors import UserError
from serving_core.interface import PARAM_LABELS
from serving_core.program import read_signature
from serving_core.runtime import RuntimeKind
from serving_core.tokenization import ErnieTokenizer, read_vocab, settings_from_tokenizer_config

from .export import convert_to_onnx, export_checkpoint
from .options import BuildOptions
from .repository import write_repository
from .plans import PLANNERS, PlanInputs
from .sources import ModelSource, inspect_source

log = logging.getLogger("builder")
DEFAULT_MAX_SEQ_LEN = 128


@dataclass(frozen=True)
class BuildReport:
    ensemble: str
    output: Path
    models: tuple[str, ...]
    source_kind: str
    labels: tuple[str, ...]
    max_seq_len: int
    runtime: str
    seconds: float


def ensemble_name_for(directory: Path) -> str:
    """A Triton-safe model name from a directory name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", directory.resolve().name).strip("._-")
    return name or "ernie"


def resolve_max_seq_len(source: ModelSource, requested: int | None) -> int:
    limit = int(source.config.get("max_position_embeddings", 0)) or None
    if requested is None:
        return min(DEFAULT_MAX_SEQ_LEN, limit) if limit else DEFAULT_MAX_SEQ_LEN
    if requested < 3:
        raise UserError(f"--max-seq-len {requested} leaves no room for text ([CLS] and [SEP] take 2)")
    if limit and requested > limit:
        raise UserError(f"--max-seq-len {requested} exceeds the model's max_position_embeddings {limit}",
                        str(source.directory))
    return requested


def build(model_dir: Path, output: Path, options: BuildOptions, show_progress: bool = True) -> BuildReport:
    started = time.perf_counter()
    stages = tqdm(total=5, desc="build", unit="step", disable=not show_progress, leave=False)

    def stage(text: str) -> None:
        stages.set_postfix_str(text)
        log.info(text)

    stage("reading model directory")
    source = inspect_source(model_dir, options.tokenizer_dir, options.labels_file, options.slot_labels_file)
    name = options.name or ensemble_name_for(source.directory)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
    max_seq_len = resolve_max_seq_len(source, options.max_seq_len)
    tokenizer_settings = settings_from_tokenizer_config(source.tokenizer_dir, max_seq_len)
    tokenizer = ErnieTokenizer(read_vocab(source.vocab_file), tokenizer_settings)
    log.info("%s: %s, labels from %s (%s), max_seq_len %d", source.directory, source.kind.value,
             source.labels_origin, ", ".join(f"{k}: {len(v)}" for k, v in source.label_sets.items()) or "none",
             max_seq_len)
    stages.update()

    with tempfile.TemporaryDirectory(prefix="ernie-build-") as work:
        work = Path(work)
        stage("exporting static program" if source.program is None else "reading static program")
        program = source.program or export_checkpoint(source, options.task, work / "program", options.int_dtype)
        signature = read_signature(program)
        log.info("program %s: inputs %s, outputs %s", program.model_file.name,
                 [(t.name, t.dtype) for t in signature.inputs], [(t.name, list(t.shape)) for t in signature.outputs])
        stages.update()

        stage(f"preparing {options.runtime} model")
        serving_program = program
        if options.runtime is RuntimeKind.ONNXRUNTIME:
            serving_program = convert_to_onnx(program, work / "model.onnx")
        stages.update()

        stage("planning ensemble")
        plan = PLANNERS[options.task](PlanInputs(name, options, program, serving_program, signature,
                                                 tokenizer_settings, source.vocab_file, source.label_sets,
                                                 tokenizer.pad_id))
        stages.update()

        stage("writing repository")
        parameters = plan.ensemble().parameters
        labels = tuple(json.loads(parameters[PARAM_LABELS].string_value)) if PARAM_LABELS in parameters else ()
        manifest = {
            "ensemble": name, "task": options.task.value, "source": str(source.directory.resolve()),
            "source_kind": source.kind.name, "labels": list(labels), "labels_origin": source.labels_origin,
            "label_sets": {k: list(v) for k, v in source.label_sets.items()},
            "ensemble_parameters": {k: v.string_value for k, v in parameters.items()},
            "max_seq_len": max_seq_len, "runtime": options.runtime.value,
            "program_inputs": [asdict(t) for t in signature.inputs],
            "program_outputs": [asdict(t) for t in signature.outputs],
            "text_pair": options.text_pair, "multi_label": options.multi_label,
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if options.target in ("triton", "all"):
            write_repository(plan, Path(output) / "triton" if options.target == "all" else output, manifest,
                             options.overwrite)
        if options.target in ("paddle-serving", "all"):
            from .paddle_serving import write_paddle_serving

            service_root = Path(output) / "paddle_serving" if options.target == "all" else Path(output)
            write_paddle_serving(plan, serving_program, signature, source.vocab_file, service_root / name,
                                 options.pipeline, options.overwrite)
        stages.update()
    stages.close()
    seconds = time.perf_counter() - started
    return BuildReport(name, Path(output), tuple(m.name for m in plan.models), source.kind.value, labels,
                       max_seq_len, options.runtime.value, seconds)
