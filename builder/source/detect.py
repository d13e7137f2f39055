"""Find out what the user pointed the builder at, and say clearly what is missing."""
from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, find_program, find_programs

from builder.source.mindspore import find_student, student_config
from builder.source.sentence_transformers import (TOKENIZER_JSON, SentenceEncoderLayout, is_sentence_transformers,
                                                  read_layout, semantic_search_layout)
from builder.source.user_files import check_params_stream, checked_int, read_json, read_text

CONFIG_NAMES = ("config.json", "model_config.json")
# What PaddleNLP's save_pretrained writes, in the order preferred when several are present:
# safetensors (safe_serialization=True; no pickle is loaded), sharded with their index
# (max_shard_size), then the pickle model_state.pdparams.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "model_state.pdparams",
                "model_state.pdparams.index.json")


def checkpoint_weights(directory: Path) -> Path | None:
    """The weights file (or shard index) PaddleNLP loads from `directory`, safetensors first."""
    return next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)


def config_files(directory: Path) -> list[Path]:
    """The model config files present (config.json, PaddleNLP 2.x's model_config.json)."""
    return [Path(directory) / name for name in CONFIG_NAMES if (Path(directory) / name).is_file()]


# Config keys the builder or PaddleNLP sizes the model by: whole numbers, or the file is refused.
_SIZE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size", "task_type_vocab_size", "num_labels", "num_classes",
              "pad_token_id")


def check_config_fits_weights(config: dict, safetensors: list[Path], directory: Path) -> None:
    """Refuse a config that would make PaddleNLP build a model far larger than the weights hold
    (a few bytes of config.json must not allocate gigabytes before the weights are read)."""
    from builder.source.user_files import safetensors_shapes

    held = sum(math.prod(shape) for path in safetensors for shape in safetensors_shapes(path).values())
    hidden, layers, ffn = (config.get(k) or 0 for k in ("hidden_size", "num_hidden_layers", "intermediate_size"))
    tables = sum(config.get(k) or 0 for k in ("vocab_size", "max_position_embeddings"))
    at_least = tables * hidden + layers * (4 * hidden * hidden + 2 * hidden * ffn)
    if at_least > 2 * held + 10**6:
        where = config_files(directory)[0] if config_files(directory) else directory
        raise UserError(f"describes a model of at least {at_least:,} parameters, but the weights hold {held:,}: "
                        "this config is not the weights' own; use the config.json save_pretrained wrote with them",
                        str(where))


def check_weight_files(files: list[Path]) -> SentenceEncoderLayout | None:
    """Read every weights file as a build will, running nothing: safetensors headers against the
    file, pickles through the allow-list unpickler (refused with exit 2 naming the file and the
    global); every tensor finite. Returns the layout of a PaddleNLP semantic-search model (its
    encoder under `ptm.`, a projection) where the tensors are one's."""
    from builder.source.pickled_weights import load_pickled_weights
    from builder.source.user_files import safetensors_shapes, safetensors_tensors

    def checked(path: Path, tensors):
        for name, array in tensors:
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise UserError(f"tensor {name!r} holds NaN or infinite values: the file is corrupt, or the training "
                                "that wrote it diverged", str(path))
            yield name, array

    def tensors_of(path: Path):
        if path.suffix == ".safetensors":
            safetensors_shapes(path)
            return safetensors_tensors(path)
        return load_pickled_weights(path).items()

    layouts = [semantic_search_layout(checked(path, tensors_of(path))) for path in files]
    return next((layout for layout in layouts if layout is not None), None)


def weight_files(weights: Path) -> list[Path]:
    """The files holding the tensors: `weights` itself, or the shards its index names, each checked
    to be a file in the same directory (an index cannot point outside the model directory)."""
    if not weights.name.endswith(".index.json"):
        return [weights]
    index = read_json(weights, "shard index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError("a shard index needs a weight_map of tensor names to shard files, as save_pretrained "
                        "writes it", str(weights))
    shards = []
    for shard in sorted(set(map(str, weight_map.values()))):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise UserError(f"names the shard {shard!r}, which is not a file beside the index; shards stay in the "
                            "model directory", str(weights))
        if not (weights.parent / shard).is_file():
            raise UserError(f"names the shard {shard!r}, which is missing; copy every shard the index lists",
                            str(weights))
        shards.append(weights.parent / shard)
    return shards


LABEL_FILE = "label.txt"


class SourceKind(str, enum.Enum):
    CHECKPOINT = "PaddleNLP checkpoint"  # config + weights (WEIGHT_FILES): the builder exports it
    STATIC = "static export"  # *.json (PIR) / *.pdmodel + *.pdiparams, or *.onnx
    MINDSPORE = "MindSpore TinyBERT student"  # task-distilled *.ckpt + the run's yaml (builder/source/mindspore.py)
    SENTENCE_TRANSFORMERS = "sentence-transformers directory"  # HF BERT + modules.json (sentence_transformers.py)


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
    # What follows the encoder: SENTENCE_TRANSFORMERS' modules, or a semantic-search CHECKPOINT's projection
    encoder_layout: SentenceEncoderLayout | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.label_sets.get("labels") or self.label_sets.get("intent", ())

    @property
    def vocab_file(self) -> Path:
        """vocab.txt; a sentence-transformers directory's tokenizer.json (what HF tokenizes with)."""
        if self.kind is SourceKind.SENTENCE_TRANSFORMERS and (self.tokenizer_dir / TOKENIZER_JSON).is_file():
            return self.tokenizer_dir / TOKENIZER_JSON
        return self.tokenizer_dir / "vocab.txt"


def _read_config(directory: Path) -> dict:
    for path in config_files(directory):
        config = read_json(path, "model config")
        if not isinstance(config, dict):
            raise UserError("a model config is a JSON object of settings", str(path))
        try:
            config = _flatten_init_args(config)
        except RecursionError:
            raise UserError("init_args are nested too deep for a model config", str(path)) from None
        for key in _SIZE_KEYS:
            checked_int(config, key, path, high=2**24 if key != "pad_token_id" else 2**31 - 1)
        architectures = config.get("architectures")
        if architectures is not None and not (isinstance(architectures, list)
                                              and all(isinstance(a, str) for a in architectures)):
            raise UserError("architectures must be a list of class names", str(path))
        if not isinstance(config.get("id2label", {}), dict):
            raise UserError("id2label must map class ids to names", str(path))
        return config
    return {}


def _flatten_init_args(config: dict) -> dict:
    """PaddleNLP 2.x model_config.json nests the encoder's settings in `init_args`
    ({"init_class": "ErnieForSequenceClassification", "init_args": [{"init_class": "ErnieModel",
    "max_position_embeddings": ...}], "num_classes": 3}): read them as config.json has them."""
    if "init_args" not in config:
        return config
    flat: dict = {}
    items = config.get("init_args") or []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            flat.update(_flatten_init_args(item))
    flat.update({k: v for k, v in config.items() if k not in ("init_args", "init_class")})
    if config.get("init_class") and "architectures" not in flat and "For" in str(config["init_class"]):
        flat["architectures"] = [config["init_class"]]
    return flat


def read_label_file(path: Path) -> tuple[str, ...]:
    """PaddleNLP label.txt: one label a line, class id = line number (blank lines skipped)."""
    # read_text drops a BOM (Windows editors write one): it is not part of the first label.
    labels = tuple(line.strip() for line in read_text(path, "label file").splitlines() if line.strip())
    if not labels:
        raise UserError("the label file is empty; write one label a line", str(path))
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise UserError(f"labels appear more than once: {duplicates}", str(path))
    return labels


def _labels_from_config(config: dict) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    if not id2label:
        return ()
    if not all(str(k).isdigit() for k in id2label):
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
    if is_sentence_transformers(model_dir):
        return _sentence_transformers(model_dir, tokenizer_dir)
    encoder_layout = None
    student = find_student(model_dir, program_file) if not find_programs(model_dir) else None
    program = None if student else find_program(model_dir, program_file)
    if program is not None and program.params_file is not None:
        check_params_stream(program.params_file)  # before Paddle reads it: every declared size fits the file
    config = student_config(*student) if student else _read_config(model_dir)
    if student is not None:
        kind = SourceKind.MINDSPORE
    elif program is not None:
        kind = SourceKind.STATIC
    elif config and checkpoint_weights(model_dir) is not None:
        kind = SourceKind.CHECKPOINT
        encoder_layout = check_weight_files(weight_files(checkpoint_weights(model_dir)))
    else:
        found = ", ".join(sorted(p.name for p in model_dir.iterdir())[:12]) or "nothing"
        if config:
            hint = f"config.json is there but no weights ({', '.join(WEIGHT_FILES)}): was save_pretrained interrupted?"
        elif checkpoint_weights(model_dir):
            hint = ("weights without config.json: a model saved by paddle.save(model.state_dict()) (PaddleNLP's "
                    "semantic-search scripts) needs its pretrained model's config beside it: "
                    "AutoConfig.from_pretrained(NAME).save_pretrained(DIR)")
        else:
            hint = ("expected a PaddleNLP checkpoint (config.json + model_state.pdparams or model.safetensors, sharded "
                    "or not, + vocab.txt), a static export (inference.json or *.pdmodel, with *.pdiparams), a "
                    "sentence-transformers directory (modules.json) or a MindSpore TinyBERT student (*.ckpt + the "
                    "run's yaml + vocab.txt)")
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
    return ModelSource(model_dir, kind, program, tokenizer_dir, config, label_sets, origin, student,
                       encoder_layout if kind is SourceKind.CHECKPOINT else None)


def _sentence_transformers(model_dir: Path, tokenizer_dir: Path | None) -> ModelSource:
    """A sentence-transformers directory: its modules, BERT config and safetensors weights checked."""
    config = _read_config(model_dir)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise UserError("a sentence-transformers encoder is read from model.safetensors (pytorch_model.bin is a "
                        "pickle the builder does not run): save it with safe_serialization, as current "
                        "sentence-transformers does", str(model_dir))
    layout = read_layout(model_dir)
    check_weight_files([weights])
    for dense in layout.dense:
        if not (np.isfinite(dense.weight).all() and (dense.bias is None or np.isfinite(dense.bias).all())):
            raise UserError("a Dense module holds NaN or infinite values", str(model_dir))
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else model_dir
    source = ModelSource(model_dir, SourceKind.SENTENCE_TRANSFORMERS, None, tokenizer_dir, config, {},
                         "none (a sentence encoder)", encoder_layout=layout)
    if not source.vocab_file.is_file():
        raise UserError(f"neither {TOKENIZER_JSON} nor vocab.txt is there; pass --tokenizer DIR with the "
                        "tokenizer's files", str(tokenizer_dir))
    return source


# The head a PaddleNLP `architectures` entry ends with -> the task it serves.
ARCHITECTURE_TASKS = {"ForSequenceClassification": "seq_cls", "ForTokenClassification": "token_cls",
                      "ForQuestionAnswering": "qa", "Model": "embedding"}  # ErnieModel, BertModel: no head


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
    if source.encoder_layout is not None and source.kind is SourceKind.CHECKPOINT and task != "embedding":
        raise UserError(f"a PaddleNLP semantic-search model (its encoder under ptm., a projection) makes sentence "
                        f"vectors; build it with --task embedding, not {task}", str(source.directory))
    if source.kind is SourceKind.SENTENCE_TRANSFORMERS and task != "embedding":
        raise UserError(f"a sentence-transformers directory is a sentence encoder; build it with --task embedding, "
                        f"not {task}", str(source.directory / "modules.json"))
    named = task_of_config(source.config)
    if named is not None and named != task and task != "intent_slot":
        where = source.mindspore_files[1] if source.mindspore_files else source.directory / "config.json"
        raise UserError(f"the model is a {source.config['architectures'][0]} ({named}), not a {task} model; "
                        f"build it with --task {named}", str(where))
