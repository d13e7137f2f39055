"""What every task's planner shares: checks on the program, and the spec's tokenizer and model step."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from serving_core import interface
from serving_core.errors import UserError
from serving_core.feed_checks import feed_limits
from serving_core.model_step import ModelStepSettings
from serving_core.program import ProgramFiles, ProgramSignature
from serving_core.shape_buckets import WARM_UP_TOKENS
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.tensors import TensorSpec
from serving_core.tokenization import KNOWN_MODEL_INPUTS, TokenizerSettings, pad_value_for
from serving_core.windows import WindowSettings

from builder.options import BuildOptions


@dataclass(frozen=True)
class PlanInputs:
    """Everything a task's planner needs, read and checked by `build`."""

    name: str
    options: BuildOptions
    program: ProgramFiles  # the Paddle (or ONNX) program the signature was read from
    serving_program: ProgramFiles  # what the model step runs
    signature: ProgramSignature
    tokenizer: TokenizerSettings
    label_sets: dict[str, tuple[str, ...]]
    pad_id: int
    vocab_size: int  # ids the model's embedding table takes (the tokenizer writes no larger one)
    type_vocab_size: int | None = None  # from the model's config, when it has one
    origin: Path | None = None  # the user's file or directory errors name (not the builder's temp export)
    onednn: bool = True  # paddle runtime: False when the engine proof found oneDNN wrong for this model

    def fail(self, message: str) -> UserError:
        return UserError(message, str(self.origin or self.program.model_file))


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


# Outputs per rank of each task's program (rank -> how many), to name the task a program is for.
TASK_OUTPUT_RANKS = {"seq_cls": {2: 1}, "token_cls": {3: 1}, "qa": {2: 2}, "intent_slot": {2: 1, 3: 1},
                     "embedding": {2: 1}}


def outputs_by_rank(inputs: PlanInputs, expected: dict[int, int], task_hint: str) -> dict[int, list[TensorSpec]]:
    """Program outputs grouped by rank; `expected` says how many of each rank the task needs."""
    grouped: dict[int, list[TensorSpec]] = {}
    for spec in inputs.signature.outputs:
        grouped.setdefault(len(spec.shape), []).append(spec)
    layout = {rank: len(specs) for rank, specs in grouped.items()}
    if layout != expected:
        found = ", ".join(f"{o.name} {list(o.shape)}" for o in inputs.signature.outputs)
        fits = next((task for task, ranks in TASK_OUTPUT_RANKS.items() if ranks == layout), None)
        hint = f"; they fit --task {fits}" if fits else ""
        raise inputs.fail(f"the program's outputs ({found}) do not look like a {task_hint}{hint}")
    return grouped


def tokenizer_layout(inputs: PlanInputs, window: WindowSettings,
                     per_token: bool = True) -> tuple[tuple[IOTensor, ...], tuple[IOTensor, ...]]:
    """(the program's feeds as the tokenizer writes them, the tokenizer's bookkeeping outputs).
    Windows: the text token at each window position and its character offsets where the answer is
    per token (`per_token`), else how many windows each text has."""
    check_inputs(inputs)
    seq_dims = (-1,) if window.mode == "truncate" else (-1, -1)
    feeds = tuple(IOTensor(spec.name, spec.dtype, seq_dims) for spec in inputs.signature.inputs)
    extras = [IOTensor(interface.TEXT_TRUNCATED, "bool", (1,))]
    if window.mode != "truncate" and per_token:
        extras += [IOTensor(interface.TOKEN_INDEX, "int32", (-1, -1)), IOTensor(interface.OFFSETS, "int32", (-1, 2))]
    elif window.mode != "truncate":
        extras.append(IOTensor(interface.TEXT_WINDOWS, "int32", (1,)))
    return feeds, tuple(extras)


def model_settings(inputs: PlanInputs) -> ModelStepSettings:
    """The model step: runtime, files, threads, padding and the value limits of its inputs."""
    serving, options = inputs.serving_program, inputs.options
    names = [spec.name for spec in inputs.signature.inputs]
    limits = feed_limits(names, inputs.vocab_size, inputs.tokenizer.max_seq_len, inputs.type_vocab_size)
    return ModelStepSettings(
        runtime=options.runtime.value, program_format=serving.format.value, model_file=serving.model_file.name,
        params_file=serving.params_file.name if serving.params_file else "", num_threads=options.num_threads,
        precision=options.precision, onednn=inputs.onednn, max_batch_tokens=options.max_batch_tokens,
        pad_values={name: pad_value_for(name, inputs.pad_id) for name in names}, value_limits=limits.value_limits,
        int8_full_range=options.quantize == "int8" and not options.quantize_options.reduces_range,
        bucket_length_step=options.shape_buckets, warm_up_tokens=WARM_UP_TOKENS if options.shape_buckets else 0)


def ensemble_spec(inputs: PlanInputs, text_inputs: list[IOTensor], window: WindowSettings,
                  program_outputs: list[tuple[TensorSpec, tuple[int, ...], str]], post_inputs: list[IOTensor],
                  post_outputs: list[IOTensor], postprocess, per_token: bool = True) -> EnsembleSpec:
    """The spec of tokenizer -> model -> postprocess. `program_outputs`: (program output, its dims
    without the batch axis, the tensor the postprocess reads it as). Every postprocess also
    passes on the tokenizer's truncation flag, one per text. `per_token`: see tokenizer_layout."""
    feeds, extras = tokenizer_layout(inputs, window, per_token)
    for spec, _, _ in program_outputs:
        if inputs.options.gpu_onnxruntime and spec.dtype != "float32":
            raise inputs.fail(f"output {spec.name} is {spec.dtype}; the native GPU step declares float32")
    return EnsembleSpec(
        name=inputs.name, task=inputs.options.task.value, inputs=tuple(text_inputs),
        tokenizer=replace(inputs.tokenizer, vocab_file=Path(inputs.tokenizer.vocab_file).name), window=window,
        feeds=feeds,
        tokenizer_extras=extras, model=model_settings(inputs),
        program_outputs=tuple(IOTensor(spec.name, "float32", dims) for spec, dims, _ in program_outputs),
        roles={spec.name: role for spec, _, role in program_outputs},
        post_inputs=(*post_inputs, IOTensor(interface.TEXT_TRUNCATED, "bool", (1,))),
        post_outputs=(*post_outputs, IOTensor(interface.TRUNCATED, "bool", ())), postprocess=postprocess)


def span_outputs(prefix: str) -> list[IOTensor]:
    """Typed span tensors per text: <prefix>_label/_text strings, _start/_end int32, _score float32
    ([-1] each, padded to the most spans of the request), and _count."""
    return [IOTensor(f"{prefix}_label", "string", (-1,)), IOTensor(f"{prefix}_text", "string", (-1,)),
            IOTensor(f"{prefix}_start", "int32", (-1,)), IOTensor(f"{prefix}_end", "int32", (-1,)),
            IOTensor(f"{prefix}_score", "float32", (-1,)), IOTensor(f"{prefix}_count", "int32", ())]
