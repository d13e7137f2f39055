"""What a build writes: one directory per Triton model, described before anything is written."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc


@dataclass
class ModelDirPlan:
    """One model directory: its config, backend code to copy, and files for its version dir."""

    config: mc.ModelConfig
    backend_code: str | None = None  # folder of model_repository/ holding model.py
    version_files: dict[str, Path] = field(default_factory=dict)  # name in `1/` -> source file
    model_files: dict[str, str] = field(default_factory=dict)  # name in the model dir -> text

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class RepositoryPlan:
    ensemble_name: str
    models: list[ModelDirPlan]

    def configs(self) -> dict[str, mc.ModelConfig]:
        return {m.name: m.config for m in self.models}

    def ensemble(self) -> mc.ModelConfig:
        return next(m.config for m in self.models if m.name == self.ensemble_name)
