"""An EnsembleSpec rendered as Triton models: three Python steps and the ensemble that wires them.

The tokenizer and model steps batch dynamically; the postprocess and the ensemble have
max_batch_size 0 with the batch axis in their dims, so a per-text value is [B] on the wire
and in the config alike. The steps get their typed settings in their config `parameters`;
the ensemble's `parameters` tell remote clients what they talk to (task, texts per request,
labels, text_pair, multi_label, max_seq_len, tag scheme; an embedding's dim, pooling and
normalize), since they cannot read build.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from serving_core import interface
from serving_core.errors import UserError
from serving_core.program import ProgramFiles
from serving_core.spec import EnsembleSpec, IOTensor

from builder.triton.plan import ModelDirPlan, RepositoryPlan
from builder.triton.config import (BatchingOptions, EnsembleStep, default_model_batching, ensemble,
                                   native_onnxruntime_step, python_step)


@dataclass(frozen=True)
class TritonOptions:
    """How Triton schedules the steps, and whether the model step is Triton's native GPU backend."""

    model_batching: BatchingOptions = field(default_factory=default_model_batching)
    step_batching: BatchingOptions = field(default_factory=lambda: BatchingOptions(max_queue_delay_us=0))
    gpu_onnxruntime: bool = False  # model step = Triton's onnxruntime backend on GPU (NGC containers)
    gpu_tensorrt: bool = False  # ... with the TensorRT execution accelerator
    gpu_fp16: bool = False  # ... in FP16
    direct: bool = False  # also <name>_direct: the three steps in one batched Python model (seq_cls, embedding)


def client_parameters(spec: EnsembleSpec, max_batch_size: int) -> dict[str, str]:
    """The ensemble's `parameters`: what a client reads to learn how to talk to the model."""
    settings = spec.postprocess
    values: dict[str, object] = {interface.PARAM_TASK: spec.task, interface.PARAM_MAX_BATCH_SIZE: max_batch_size,
                                 interface.PARAM_MAX_SEQ_LEN: spec.tokenizer.max_seq_len}
    if spec.task == interface.Task.SEQ_CLS:
        values.update({interface.PARAM_LABELS: list(settings.labels), interface.PARAM_TEXT_PAIR: spec.text_pair,
                       interface.PARAM_MULTI_LABEL: settings.multi_label,
                       interface.PARAM_LONG_TEXT: "windows" if settings.aggregate else "truncate"})
    elif spec.task == interface.Task.TOKEN_CLS:
        values.update({interface.PARAM_LABELS: list(settings.labels), interface.PARAM_SCHEME: settings.scheme})
    elif spec.task == interface.Task.EMBEDDING:
        values.update({interface.PARAM_DIM: settings.dim, interface.PARAM_POOLING: settings.pooling,
                       interface.PARAM_NORMALIZE: settings.normalize,
                       interface.PARAM_LONG_TEXT: "windows" if settings.aggregate else "truncate"})
    elif spec.task == interface.Task.INTENT_SLOT:
        values.update({interface.PARAM_LABELS: list(settings.intents),
                       interface.PARAM_SLOT_LABELS: list(settings.slots), interface.PARAM_SCHEME: settings.scheme})
    return {key: value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            for key, value in values.items()}


def repository_plan(spec: EnsembleSpec, options: TritonOptions, vocab_file: Path,
                    program: ProgramFiles) -> RepositoryPlan:
    """The four model directories of `spec`: `vocab_file` and `program` are copied into them."""
    steps = replace(options.step_batching, max_batch_size=options.model_batching.max_batch_size)
    tokenizer = python_step(spec.tokenizer_step, list(spec.inputs), list(spec.feeds + spec.tokenizer_extras), steps,
                            (spec.tokenizer, spec.window))
    # The postprocess and the ensemble do not batch (max_batch_size 0): their configs spell the
    # batch axis out, so one value per text is declared [-1] and answered [B], as served.
    postprocess = python_step(spec.postprocess_step, list(spec.post_inputs), list(spec.post_outputs),
                              replace(steps, max_batch_size=0), spec.postprocess)
    wiring = [
        EnsembleStep(spec.tokenizer_step, {t.name: t.name for t in spec.inputs},
                     {t.name: t.name for t in spec.feeds + spec.tokenizer_extras}),
        EnsembleStep(spec.model_step_name, {t.name: t.name for t in spec.feeds}, dict(spec.roles)),
        EnsembleStep(spec.postprocess_step, {t.name: t.name for t in spec.post_inputs},
                     {t.name: t.name for t in spec.post_outputs}),
    ]
    config = ensemble(spec.name, list(spec.inputs), list(spec.post_outputs), wiring, 0,
                      client_parameters(spec, options.model_batching.max_batch_size))
    models = [ModelDirPlan(config), ModelDirPlan(tokenizer, "tokenizer", {spec.tokenizer.vocab_file: vocab_file}),
              _model_step(spec, options, program), ModelDirPlan(postprocess, f"postprocess_{spec.task}")]
    if options.direct:
        models.append(_direct_model(spec, options, vocab_file, program))
    return RepositoryPlan(spec.name, models)


def direct_model_name(ensemble_name: str) -> str:
    return f"{ensemble_name}_direct"


def _per_text_row(tensor: IOTensor) -> IOTensor:
    """A batched model declares one value per text as [1] (Triton wants dims); served [B, 1]."""
    return replace(tensor, dims=(1,)) if tensor.batched and not tensor.dims else tensor


def _direct_model(spec: EnsembleSpec, options: TritonOptions, vocab_file: Path, program: ProgramFiles) -> ModelDirPlan:
    """`<name>_direct`: the ensemble's inputs and outputs on one batched Python model that
    tokenizes, runs the program and decodes in one execute; every step's settings, and the
    ensemble's client parameters, in its config."""
    settings = spec.model_step()
    config = python_step(direct_model_name(spec.name), list(spec.inputs),
                         [_per_text_row(t) for t in spec.post_outputs], options.model_batching,
                         (spec.tokenizer, spec.window, settings, spec.postprocess),
                         client_parameters(spec, options.model_batching.max_batch_size))
    files = {spec.tokenizer.vocab_file: vocab_file, settings.model_file: program.model_file}
    if program.params_file:
        files[settings.params_file] = program.params_file
    return ModelDirPlan(config, f"direct_{spec.task}", files)


def _model_step(spec: EnsembleSpec, options: TritonOptions, program: ProgramFiles) -> ModelDirPlan:
    if options.gpu_onnxruntime:
        return _native_onnxruntime_step(spec, options, program)
    settings = spec.model_step()
    # No batch hold: this step's answers reach clients through the postprocess and the ensemble,
    # later than a hold of a few ms lasts (ERNIE 3.0 Medium, 16 clients: batches of 8.0-8.3 texts
    # with or without one, benchmarks/results/medium_hold.md).
    config = python_step(spec.model_step_name, [replace(t, ragged=True) for t in spec.feeds],
                         list(spec.program_outputs), replace(options.model_batching, hold_ms=0.0), settings)
    files = {settings.model_file: program.model_file}
    if program.params_file:
        files[settings.params_file] = program.params_file
    return ModelDirPlan(config, "model", files)


def _native_onnxruntime_step(spec: EnsembleSpec, options: TritonOptions, program: ProgramFiles) -> ModelDirPlan:
    """The model step as Triton's onnxruntime backend on GPU (users' NGC containers)."""
    if spec.window.mode != "truncate" or not spec.window.pad_to_max:
        raise UserError(f"--gpu-onnxruntime serves {spec.task} only through the Python model step (its windows "
                        "need flattening); it is available for seq_cls")
    if program.format.value != "onnx":
        raise UserError("--gpu-onnxruntime needs the ONNX model: add --runtime onnxruntime")
    config = native_onnxruntime_step(spec.model_step_name, list(spec.feeds), list(spec.program_outputs),
                                     options.model_batching, options.gpu_tensorrt, options.gpu_fp16)
    return ModelDirPlan(config, None, {"model.onnx": program.model_file})
