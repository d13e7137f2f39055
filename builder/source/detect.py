"""Find out what the user pointed the builder at, and say clearly what is missing."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, find_program, find_programs

from builder.source.mindspore import find_student, student_config

CONFIG_NAMES = ("config.json", "model_config.json")
# What PaddleNLP's save_pretrained writes, in the order preferred when several are present:
# safetensors (safe_serialization=True; no pickle is loaded), sharded with their index
# (max_shard_size), then the pickle model_state.pdparams.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "model_state.pdparams",
                "model_state.pdparams.index.json")


def checkpoint_weights(directory: Path) -> Path | None:
    """The weights file (or shard index) PaddleNLP loads from `directory`, safetensors first."""
    return next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)
LABEL_FILE = "label.txt"


class SourceKind(str, enum.Enum):
    CHECKPOINT = "PaddleNLP checkpoint"  # config + weights (WEIGHT_FILES): the builder exports it
    STATIC = "static export"  # *.json (PIR) / *.pdmodel + *.pdiparams, or *.onnx
    MINDSPORE = "MindSpore TinyBERT student"  # task-distilled *.ckpt + the run's yaml (builder/source/mindspore.py)


@dataclass(frozen=True)
class ModelSource:
    directory: Path
    kind: SourceKind
    program: ProgramFiles | None  # set for STATIC
    tokenizer_dir: Path  # holds vocab.txt (+ tokenizer_config.json, special_tokens_map.json)
    config: dict  # config.json / model_config.json, {} when absent
    label_sets: dict[str, tuple[str, ...]]  # "labels" (seq_cls, token_cls) or "intent" + "slot"
    labels_origin: str  # where the labels came from, for logs and errors
    mindspore_files: tuple[Path, Path] | None = None  # MINDSPORE: (the .ckpt, the run's yaml)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.label_sets.get("labels") or self.label_sets.get("intent", ())

    @property
    def vocab_file(self) -> Path:
        return self.tokenizer_dir / "vocab.txt"


def _read_config(directory: Path) -> dict:
    for name in CONFIG_NAMES:
        path = directory / name
        if path.is_file():
            try:
                return _flatten_init_args(json.loads(path.read_text(encoding="utf-8-sig")))
            except json.JSONDecodeError as exc:
                raise UserError(f"invalid JSON ({exc})", str(path)) from exc
    return {}


def _flatten_init_args(config: dict) -> dict:
    """PaddleNLP 2.x model_config.json nests the encoder's settings in `init_args`
    ({"init_class": "ErnieForSequenceClassification", "init_args": [{"init_class": "ErnieModel",
    "max_position_embeddings": ...}], "num_classes": 3}): read them as config.json has them."""
    if "init_args" not in config:
        return config
    flat: dict = {}
    for item in config.get("init_args") or []:
        if isinstance(item, dict):
            flat.update(_flatten_init_args(item))
    flat.update({k: v for k, v in config.items() if k not in ("init_args", "init_class")})
    if config.get("init_class") and "architectures" not in flat and "For" in str(config["init_class"]):
        flat["architectures"] = [config["init_class"]]
    return flat


def read_label_file(path: Path) -> tuple[str, ...]:
    """PaddleNLP label.txt: one label a line, class id = line number (blank lines skipped)."""
    try:
        # utf-8-sig: a BOM (Windows editors write one) is not part of the first label.
        labels = tuple(line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip())
    except UnicodeDecodeError as exc:
        raise UserError("is not UTF-8 text; save the label file as UTF-8, one label a line", str(path)) from exc
    if not labels:
        raise UserError("the label file is empty; write one label a line", str(path))
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise UserError(f"labels appear more than once: {duplicates}", str(path))
    return labels


def _labels_from_config(config: dict) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    if not id2label:
        return ()
    ids = sorted(int(k) for k in id2label)
    if ids != list(range(len(ids))):
        return ()
    labels = tuple(str(id2label.get(str(i), id2label.get(i))) for i in ids)
    # PaddleNLP writes LABEL_0, LABEL_1 ... when nobody set names: not worth reporting as names.
    return () if all(label == f"LABEL_{i}" for i, label in enumerate(labels)) else labels


def _optional_label_file(flag: Path | None, default: Path) -> tuple[tuple[str, ...], str | None]:
    if flag is not None:
        if not Path(flag).is_file():
            raise UserError("label file not found", str(flag))
        return read_label_file(Path(flag)), str(flag)
    if default.is_file():
        return read_label_file(default), str(default)
    return (), None


def inspect_source(model_dir: Path, tokenizer_dir: Path | None = None, labels_file: Path | None = None,
                   slot_labels_file: Path | None = None, program_file: str | None = None) -> ModelSource:
    """Detect the model format, tokenizer files and labels in `model_dir`.

    Labels: `label.txt` (seq_cls, token_cls; or id2label in the config), or the seed's
    `intent_label.txt` + `slot_label.txt` for joint intent/slot models. A MindSpore student's
    config is made from its yaml and checked against its weights (builder/source/mindspore.py).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError("is not a directory; pass the directory of a finetuned model "
                        "(PaddleNLP checkpoint or static export)", str(model_dir))
    student = find_student(model_dir, program_file) if not find_programs(model_dir) else None
    program = None if student else find_program(model_dir, program_file)
    config = student_config(*student) if student else _read_config(model_dir)
    if student is not None:
        kind = SourceKind.MINDSPORE
    elif program is not None:
        kind = SourceKind.STATIC
    elif config and checkpoint_weights(model_dir) is not None:
        kind = SourceKind.CHECKPOINT
    else:
        found = ", ".join(sorted(p.name for p in model_dir.iterdir())[:12]) or "nothing"
        hint = (f"config.json is there but no weights ({', '.join(WEIGHT_FILES)}): was save_pretrained "
                "interrupted?" if config else "expected a PaddleNLP checkpoint (config.json + model_state.pdparams "
                "or model.safetensors, sharded or not, + vocab.txt), a static export (inference.json or "
                "*.pdmodel, with *.pdiparams) or a MindSpore TinyBERT student (*.ckpt + the run's yaml + vocab.txt)")
        raise UserError(f"unknown model format (found: {found}); {hint}", str(model_dir))

    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else model_dir
    if not (tokenizer_dir / "vocab.txt").is_file():
        where = "--tokenizer" if tokenizer_dir != model_dir else "the model directory"
        raise UserError(f"no vocab.txt in {where}; pass --tokenizer DIR with the files the tokenizer's "
                        "save_pretrained wrote (vocab.txt, tokenizer_config.json)", str(tokenizer_dir))

    intents, intent_origin = _optional_label_file(labels_file, model_dir / "intent_label.txt")
    slots, slot_origin = _optional_label_file(slot_labels_file, model_dir / "slot_label.txt")
    if slots:
        label_sets, origin = {"intent": intents, "slot": slots}, f"{intent_origin} and {slot_origin}"
    else:
        labels, origin = _optional_label_file(labels_file, model_dir / LABEL_FILE)
        if not labels:
            labels, origin = _labels_from_config(config), "id2label in the model config"
        label_sets = {"labels": labels} if labels else {}
        origin = origin if labels else "none (classes will be named by id)"
    return ModelSource(model_dir, kind, program, tokenizer_dir, config, label_sets, origin, student)


# The head a PaddleNLP `architectures` entry ends with -> the task it serves.
ARCHITECTURE_TASKS = {"ForSequenceClassification": "seq_cls", "ForTokenClassification": "token_cls",
                      "ForQuestionAnswering": "qa"}


def task_of_config(config: dict) -> str | None:
    """The task the config's `architectures` names (None when it names no known head)."""
    for architecture in config.get("architectures") or []:
        for suffix, task in ARCHITECTURE_TASKS.items():
            if str(architecture).endswith(suffix):
                return task
    return None


def check_task(source: ModelSource, task: str) -> None:
    """A checkpoint's `architectures` must agree with --task: exporting another task's head
    from it would serve untrained weights."""
    named = task_of_config(source.config)
    if named is not None and named != task and task != "intent_slot":
        where = source.mindspore_files[1] if source.mindspore_files else source.directory / "config.json"
        raise UserError(f"the model is a {source.config['architectures'][0]} ({named}), not a {task} model; "
                        f"build it with --task {named}", str(where))
