"""The build spec: one ensemble described once, whatever server runs it.

The task planners (builder/plans) produce an `EnsembleSpec`. The Triton writer renders it as
config.pbtxt files, the Paddle Serving writer copies it into service.json, and `build.json`
stores it, so `verify`, INT8 calibration and the benchmarks read the same typed settings back
instead of parsing a server's config. Each setting is stored once: the model step's request
limits (longest sequence, most windows) are derived from the tokenizer's by `model_step()`.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, replace
from pathlib import Path

from . import interface
from .embedding import EmbeddingSettings
from .intent_slot import IntentSlotSettings
from .model_step import ModelStepSettings
from .parameters import from_dict
from .qa import QASettings
from .seq_cls import SeqClsSettings
from .token_cls import TokenClsSettings
from .tokenization import TokenizerSettings
from .windows import WindowSettings

SPEC_VERSION = 1
MODEL_VERSION = "1"  # the version directory every generated model has (Triton's, and the file record's)
DTYPES = ("string", "bool", "int32", "int64", "float32")
POSTPROCESS_SETTINGS = {interface.Task.SEQ_CLS: SeqClsSettings, interface.Task.TOKEN_CLS: TokenClsSettings,
                        interface.Task.QA: QASettings, interface.Task.INTENT_SLOT: IntentSlotSettings,
                        interface.Task.EMBEDDING: EmbeddingSettings}
_DERIVED_MODEL_FIELDS = ("max_seq_len", "max_windows")  # filled in by EnsembleSpec.model_step()
PostprocessSettings = typing.Union[SeqClsSettings, TokenClsSettings, QASettings, IntentSlotSettings,
                                   EmbeddingSettings]


@dataclass(frozen=True)
class IOTensor:
    """One tensor a step takes or gives. `batched`: one item per text, `dims` without the batch
    axis (-1: any length; () for one value per text); otherwise `dims` is the whole request's
    shape. `ragged`: rows of one batch may differ in length (the model step's inputs)."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    ragged: bool = False
    batched: bool = True

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"{self.name}: dtype {self.dtype!r} is not one of {DTYPES}")
        object.__setattr__(self, "dims", tuple(self.dims))


@dataclass(frozen=True)
class EnsembleSpec:
    """tokenizer -> model -> postprocess for one task.

    `feeds` are the program's inputs as the tokenizer writes them and `tokenizer_extras` its
    bookkeeping (truncated flag, window token index, character offsets). `program_outputs`
    keep the program's own names; `roles` maps each to the tensor the postprocess reads.
    The ensemble answers `post_outputs`.
    """

    name: str
    task: str
    inputs: tuple[IOTensor, ...]
    tokenizer: TokenizerSettings
    window: WindowSettings
    feeds: tuple[IOTensor, ...]
    tokenizer_extras: tuple[IOTensor, ...]
    model: ModelStepSettings
    program_outputs: tuple[IOTensor, ...]
    roles: dict[str, str]
    post_inputs: tuple[IOTensor, ...]
    post_outputs: tuple[IOTensor, ...]
    postprocess: PostprocessSettings
    version: int = SPEC_VERSION

    def __post_init__(self):
        task = interface.Task(self.task)
        if not isinstance(self.postprocess, POSTPROCESS_SETTINGS[task]):
            raise ValueError(f"{task} takes {POSTPROCESS_SETTINGS[task].__name__}, "
                             f"not {type(self.postprocess).__name__}")
        if self.model.max_seq_len or self.model.max_windows:
            raise ValueError("the model step's limits come from the tokenizer settings; leave them 0 in the spec")
        program_names = {t.name for t in self.program_outputs}
        if set(self.roles) != program_names:
            raise ValueError(f"roles {sorted(self.roles)} do not name the program outputs {sorted(program_names)}")
        if self.version != SPEC_VERSION:
            raise ValueError(f"build spec version {self.version}; this code reads version {SPEC_VERSION}")

    # Names of the steps, the one place they are made.
    @property
    def tokenizer_step(self) -> str:
        return f"{self.name}_tokenizer"

    @property
    def model_step_name(self) -> str:
        return f"{self.name}_model"

    @property
    def postprocess_step(self) -> str:
        return f"{self.name}_postprocess"

    @property
    def step_names(self) -> tuple[str, str, str]:
        return self.tokenizer_step, self.model_step_name, self.postprocess_step

    @property
    def step_roles(self) -> dict[str, str]:
        """Each model of the ensemble by its role: ensemble, tokenizer, model, postprocess."""
        return {"ensemble": self.name, "tokenizer": self.tokenizer_step, "model": self.model_step_name,
                "postprocess": self.postprocess_step}

    def version_dir(self, repository: Path, step: str) -> Path:
        """The version directory of one of this ensemble's models (a step name) in `repository`."""
        return Path(repository) / step / MODEL_VERSION

    @property
    def request_keys(self) -> tuple[str, ...]:
        """The Paddle Serving service's request keys, one per text input (a JSON list of texts each)."""
        return interface.REQUEST_KEYS[interface.Task(self.task)][: len(self.inputs)]

    @property
    def text_pair(self) -> bool:
        return any(t.name == interface.TEXT_PAIR for t in self.inputs)

    @property
    def feed_names(self) -> list[str]:
        return [t.name for t in self.feeds]

    def model_step(self) -> ModelStepSettings:
        """The model step's settings with its request limits filled in from the tokenizer's."""
        return replace(self.model, max_seq_len=self.tokenizer.max_seq_len, max_windows=self.window.max_windows)

    def program_output(self, role: str) -> str:
        """The program output the postprocess reads as `role` (e.g. interface.LOGITS)."""
        return next(name for name, tensor in self.roles.items() if tensor == role)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for derived in _DERIVED_MODEL_FIELDS:
            del data["model"][derived]
        return data

    @classmethod
    def from_json(cls, data: dict) -> EnsembleSpec:
        task = interface.Task(data["task"])
        values = dict(data)
        for key in ("inputs", "feeds", "tokenizer_extras", "program_outputs", "post_inputs", "post_outputs"):
            values[key] = tuple(from_dict(IOTensor, t) for t in data[key])
        values["tokenizer"] = from_dict(TokenizerSettings, data["tokenizer"])
        values["window"] = from_dict(WindowSettings, data["window"])
        values["model"] = from_dict(ModelStepSettings, data["model"])
        values["postprocess"] = from_dict(POSTPROCESS_SETTINGS[task], data["postprocess"])
        return cls(**values)


def read_spec(path: Path) -> EnsembleSpec:
    """The spec in a build.json or service.json (its "spec" object)."""
    return EnsembleSpec.from_json(json.loads(Path(path).read_text(encoding="utf-8"))["spec"])
