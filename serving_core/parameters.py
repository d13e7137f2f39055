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
    """{field: JSON text} -> dataclass instance; unknown keys are ignored, missing keep defaults."""
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in parameters:
            continue
        if hints[field.name] is str:
            values[field.name] = parameters[field.name]
            continue
        value = json.loads(parameters[field.name])
        if typing.get_origin(hints[field.name]) is tuple:
            value = tuple(value)
        values[field.name] = value
    return cls(**values)


def parameters_from_model_config(model_config: dict) -> dict[str, str]:
    """The `parameters` of a model config as parsed JSON (what the Python backend gets)."""
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}
