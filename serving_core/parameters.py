"""Typed step settings <-> Triton config `parameters` (a map of strings).

Each field is stored as JSON under its own key, so a user can read and edit the values in
config.pbtxt, and the backend gets back the same typed dataclass the builder wrote.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import TypeVar

T = TypeVar("T")


def to_parameters(settings) -> dict[str, str]:
    """Dataclass instance -> {field: text}: strings as they are, everything else as JSON."""
    return {f.name: _encode(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def _encode(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def from_parameters(cls: type[T], parameters: dict[str, str]) -> T:
    """{field: text} -> dataclass instance; keys of other settings are ignored, missing keep defaults."""
    hints = typing.get_type_hints(cls)
    return from_dict(cls, {f.name: parameters[f.name] if hints[f.name] is str else json.loads(parameters[f.name])
                           for f in dataclasses.fields(cls) if f.name in parameters})


def from_dict(cls: type[T], data: dict) -> T:
    """A settings dataclass from its JSON object: lists become the tuples the class declares.
    Unknown keys are an error, so a file written by a newer builder is not silently misread."""
    hints = typing.get_type_hints(cls)
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return cls(**{key: tuple(value) if typing.get_origin(hints[key]) is tuple else value
                  for key, value in data.items()})


def parameters_from_model_config(model_config: dict) -> dict[str, str]:
    """The `parameters` of a model config as parsed JSON (what the Python backend gets)."""
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}
