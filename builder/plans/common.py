"""What every task's ensemble shares: the tokenizer step, the model step, the ensemble."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from serving_core import interface
from serving_core.errors import UserError
from serving_core.feed_checks import feed_limits
from serving_core.model_step import ModelStepSettings
from serving_core.program import ProgramFiles, ProgramSignature
from serving_core.tensors import TensorSpec
from serving_core.tokenization import KNOWN_MODEL_INPUTS, TokenizerSettings, pad_value_for
from serving_core.windows import WindowSettings

from ..options import BuildOptions
from ..plan import ModelDirPlan, RepositoryPlan
from ..triton_config import EnsembleStep, IOTensor, ensemble, native_onnxruntime_step, python_step


@dataclass(frozen=True)
class PlanInputs:
    """Everything a task's planner needs, read and checked by `build`."""

    name: str
    options: BuildOptions
    program: ProgramFiles  # the Paddle (or ONNX) program the signature was read from
    serving_program: ProgramFiles  # what the model step runs
    signature: ProgramSignature
    tokenizer: TokenizerSettings
    vocab_file: Path
    label_sets: dict[str, tuple[str, ...]]
    pad_id: int
    vocab_size: int  # ids the model's embedding table takes (the tokenizer writes no larger one)
    type_vocab_size: int | None = None  # from the model's config, when it has one

    def fail(self, message: str) -> UserError:
        return UserError(message, str(self.program.model_file))


def check_inputs(inputs: PlanInputs) -> None:
    for spec in inputs.signature.inputs:
        if spec.name not in KNOWN_MODEL_INPUTS:
            raise inputs.fail(f"program input {spec.name!r} is not one the tokenizer can fill "
                              f"({', '.join(KNOWN_MODEL_INPUTS)}); re-export with those input names")
        if len(spec.shape) != 2 or spec.dtype not in ("int32", "int64"):
            raise inputs.fail(f"program input {spec.name!r} is {spec.dtype} {list(spec.shape)}; "
                              "expected int32/int64 [batch, seq_len]")


def class_count(inputs: PlanInputs, output: TensorSpec, labels: tuple[str, ...], what: str) -> int:
    """Width of a classifier output's last axis, checked against its labels."""
    width = output.shape[-1]
    if width <= 0:
        if not labels:
            raise inputs.fail(f"the program does not fix the number of {what}; pass the label file")
        width = len(labels)
    if labels and len(labels) != width:
        raise inputs.fail(f"{len(labels)} {what} labels but the model has {width} outputs; "
                          "use the label file the model was trained with")
    return width


def outputs_by_rank(inputs: PlanInputs, expected: dict[int, int], task_hint: str) -> dict[int, list[TensorSpec]]:
    """Program outputs grouped by rank; `expected` says how many of each rank the task needs."""
    grouped: dict[int, list[TensorSpec]] = {}
    for spec in inputs.signature.outputs:
        grouped.setdefault(len(spec.shape), []).append(spec)
    if {rank: len(specs) for rank, specs in grouped.items()} != expected:
        found = ", ".join(f"{o.name} {list(o.shape)}" for o in inputs.signature.outputs)
        raise inputs.fail(f"the program's outputs ({found}) do not look like a {task_hint}")
    return grouped


@dataclass(frozen=True)
class EnsembleParts:
    text_inputs: list[IOTensor]
    feeds: list[IOTensor]
    tokenizer_outputs: list[IOTensor]
    tokenizer: ModelDirPlan
    model: ModelDirPlan


def step_names(name: str) -> tuple[str, str, str]:
    return f"{name}_tokenizer", f"{name}_model", f"{name}_postprocess"


def tokenizer_and_model(inputs: PlanInputs, text_inputs: list[IOTensor], window: WindowSettings,
                        model_outputs: list[tuple[TensorSpec, tuple[int, ...]]]) -> EnsembleParts:
    """The tokenizer step (per `window` mode) and the model step running the program.

    `model_outputs`: program output and its Triton dims (without the batch axis).
    """
    check_inputs(inputs)
    tok_name, model_name, _ = step_names(inputs.name)
    options = inputs.options
    step_batching = replace(options.step_batching, max_batch_size=options.model_batching.max_batch_size)
    windowed = window.mode != "truncate"
    seq_dims = (-1, -1) if windowed else (-1,)
    feeds = [IOTensor(spec.name, spec.triton_type, seq_dims) for spec in inputs.signature.inputs]
    extras = [IOTensor(interface.TRUNCATED, "TYPE_BOOL", (1,))]
    if windowed:
        extras += [IOTensor(interface.TOKEN_INDEX, "TYPE_INT32", (-1, -1)),
                   IOTensor(interface.OFFSETS, "TYPE_INT32", (-1, 2))]
    tokenizer_config = python_step(tok_name, text_inputs, feeds + extras, step_batching,
                                   (replace(inputs.tokenizer, vocab_file="vocab.txt"), window))

    serving = inputs.serving_program
    limits = feed_limits([spec.name for spec in inputs.signature.inputs], inputs.vocab_size,
                         inputs.tokenizer.max_seq_len, inputs.type_vocab_size)
    settings = ModelStepSettings(
        runtime=options.runtime.value, program_format=serving.format.value, model_file=serving.model_file.name,
        params_file=serving.params_file.name if serving.params_file else "", num_threads=options.num_threads,
        precision=options.precision, max_batch_tokens=options.max_batch_tokens,
        pad_values={spec.name: pad_value_for(spec.name, inputs.pad_id) for spec in inputs.signature.inputs},
        value_limits=limits.value_limits, max_seq_len=limits.max_seq_len, max_windows=window.max_windows)
    if options.gpu_onnxruntime:
        model_dir = _native_onnxruntime_model(inputs, feeds, model_outputs, window)
    else:
        model_config = python_step(
            model_name, [IOTensor(f.name, f.triton_type, f.dims, ragged=True) for f in feeds],
            [IOTensor(spec.name, "TYPE_FP32", dims) for spec, dims in model_outputs], options.model_batching,
            settings)
        files = {settings.model_file: serving.model_file}
        if serving.params_file:
            files[settings.params_file] = serving.params_file
        model_dir = ModelDirPlan(model_config, "model", files)
    return EnsembleParts(text_inputs, feeds, extras, ModelDirPlan(tokenizer_config, "tokenizer",
                                                                  {"vocab.txt": inputs.vocab_file}), model_dir)


def _native_onnxruntime_model(inputs: PlanInputs, feeds, model_outputs, window: WindowSettings) -> ModelDirPlan:
    """The model step as Triton's onnxruntime backend on GPU (users' NGC containers)."""
    options = inputs.options
    if window.mode != "truncate" or not window.pad_to_max:
        raise UserError(f"--gpu-onnxruntime serves {options.task} only through the Python model step (its windows "
                        "need flattening); it is available for seq_cls")
    if inputs.serving_program.format.value != "onnx":
        raise UserError("--gpu-onnxruntime needs the ONNX model: add --runtime onnxruntime")
    for spec, _ in model_outputs:
        if spec.dtype != "float32":
            raise inputs.fail(f"output {spec.name} is {spec.dtype}; the native step declares FP32")
    config = native_onnxruntime_step(
        step_names(inputs.name)[1], [IOTensor(f.name, f.triton_type, f.dims) for f in feeds],
        [IOTensor(spec.name, "TYPE_FP32", dims) for spec, dims in model_outputs], options.model_batching,
        options.gpu_tensorrt, options.gpu_fp16)
    return ModelDirPlan(config, None, {"model.onnx": inputs.serving_program.model_file})


def assemble(inputs: PlanInputs, parts: EnsembleParts, model_output_map: dict[str, str],
             post_inputs: list[IOTensor], post_input_map: dict[str, str], post_outputs: list[IOTensor],
             post_settings, post_code: str, parameters: dict[str, object],
             ensemble_extra_outputs: list[IOTensor] = ()) -> RepositoryPlan:
    """Wire tokenizer -> model -> postprocess into the ensemble `inputs.name`."""
    tok_name, model_name, post_name = step_names(inputs.name)
    options = inputs.options
    step_batching = replace(options.step_batching, max_batch_size=options.model_batching.max_batch_size)
    post_config = python_step(post_name, post_inputs, post_outputs, step_batching, post_settings)
    steps = [
        EnsembleStep(tok_name, {t.name: t.name for t in parts.text_inputs},
                     {t.name: t.name for t in parts.feeds + parts.tokenizer_outputs}),
        EnsembleStep(model_name, {f.name: f.name for f in parts.feeds}, model_output_map),
        EnsembleStep(post_name, post_input_map, {o.name: o.name for o in post_outputs}),
    ]
    outputs = list(post_outputs) + list(ensemble_extra_outputs)
    ensemble_config = ensemble(inputs.name, parts.text_inputs, outputs, steps,
                               options.model_batching.max_batch_size,
                               {interface.PARAM_TASK: options.task.value,
                                interface.PARAM_MAX_SEQ_LEN: json.dumps(inputs.tokenizer.max_seq_len),
                                **{k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                                   for k, v in parameters.items()}})
    return RepositoryPlan(inputs.name, [ModelDirPlan(ensemble_config), parts.tokenizer, parts.model,
                                        ModelDirPlan(post_config, post_code)])


def span_outputs(prefix: str) -> list[IOTensor]:
    """Typed span tensors: <prefix>_label/_text BYTES, _start/_end INT32, _score FP32 ([-1] each), _count."""
    return [IOTensor(f"{prefix}_label", "TYPE_STRING", (-1,)), IOTensor(f"{prefix}_text", "TYPE_STRING", (-1,)),
            IOTensor(f"{prefix}_start", "TYPE_INT32", (-1,)), IOTensor(f"{prefix}_end", "TYPE_INT32", (-1,)),
            IOTensor(f"{prefix}_score", "TYPE_FP32", (-1,)), IOTensor(f"{prefix}_count", "TYPE_INT32", (1,))]
