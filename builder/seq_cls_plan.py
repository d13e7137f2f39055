"""The seq_cls ensemble: <name>_tokenizer -> <name>_model -> <name>_postprocess."""
from __future__ import annotations

import json
from dataclasses import replace

from serving_core import interface
from serving_core.errors import UserError
from serving_core.model_step import ModelStepSettings
from serving_core.program import ProgramFiles, ProgramSignature
from serving_core.seq_cls import SeqClsSettings
from serving_core.tokenization import KNOWN_MODEL_INPUTS, TokenizerSettings, pad_value_for

from .options import BuildOptions
from .plan import ModelDirPlan, RepositoryPlan
from .triton_config import EnsembleStep, IOTensor, ensemble, python_step


def _check_inputs(signature: ProgramSignature, program: ProgramFiles) -> None:
    for spec in signature.inputs:
        if spec.name not in KNOWN_MODEL_INPUTS:
            raise UserError(f"program input {spec.name!r} is not one the tokenizer can fill "
                            f"({', '.join(KNOWN_MODEL_INPUTS)}); re-export with those input names",
                            str(program.model_file))
        if len(spec.shape) != 2 or spec.dtype not in ("int32", "int64"):
            raise UserError(f"program input {spec.name!r} is {spec.dtype} {list(spec.shape)}; "
                            "expected int32/int64 [batch, seq_len]", str(program.model_file))


def logits_width(signature: ProgramSignature, program: ProgramFiles, labels: tuple[str, ...]) -> int:
    """Number of classes from the program's single [batch, C] output, checked against the labels."""
    if len(signature.outputs) != 1 or len(signature.outputs[0].shape) != 2:
        found = ", ".join(f"{o.name} {list(o.shape)}" for o in signature.outputs)
        raise UserError(f"a seq_cls program has one [batch, num_labels] output; found {found}. "
                        "Was it exported from a ...ForSequenceClassification model?", str(program.model_file))
    width = signature.outputs[0].shape[1]
    if width <= 0:
        if not labels:
            raise UserError("the program does not fix the number of classes; pass --labels FILE",
                            str(program.model_file))
        width = len(labels)
    if labels and len(labels) != width:
        raise UserError(f"{len(labels)} labels but the model has {width} outputs; "
                        "use the label.txt the model was trained with", str(program.model_file))
    return width


def plan_seq_cls(name: str, options: BuildOptions, program: ProgramFiles, serving_program: ProgramFiles,
                 signature: ProgramSignature, tokenizer: TokenizerSettings, vocab_file,
                 labels: tuple[str, ...], pad_id: int) -> RepositoryPlan:
    """Configs and files of the four models; `serving_program` is what the model step runs."""
    _check_inputs(signature, program)
    width = logits_width(signature, program, labels)
    labels = labels or tuple(str(i) for i in range(width))
    tok_name, model_name, post_name = f"{name}_tokenizer", f"{name}_model", f"{name}_postprocess"
    mbs = options.model_batching.max_batch_size
    step_batching = replace(options.step_batching, max_batch_size=mbs)

    text_inputs = [IOTensor(interface.TEXT, "TYPE_STRING", (1,))]
    if options.text_pair:
        text_inputs.append(IOTensor(interface.TEXT_PAIR, "TYPE_STRING", (1,)))
    feeds = [IOTensor(spec.name, spec.triton_type, (-1,)) for spec in signature.inputs]
    truncated = IOTensor(interface.TRUNCATED, "TYPE_BOOL", (1,))
    tokenizer_config = python_step(tok_name, text_inputs, feeds + [truncated], step_batching,
                                   replace(tokenizer, vocab_file="vocab.txt"))

    logits_spec = signature.outputs[0]
    model_settings = ModelStepSettings(
        runtime=options.runtime.value, program_format=serving_program.format.value,
        model_file=serving_program.model_file.name,
        params_file=serving_program.params_file.name if serving_program.params_file else "",
        num_threads=options.num_threads,
        pad_values={spec.name: pad_value_for(spec.name, pad_id) for spec in signature.inputs})
    model_config = python_step(
        model_name, [IOTensor(f.name, f.triton_type, f.dims, ragged=True) for f in feeds],
        [IOTensor(logits_spec.name, "TYPE_FP32", (width,))], options.model_batching, model_settings)

    outputs = [IOTensor(interface.LABEL, "TYPE_INT64", (1,)),
               IOTensor(interface.CONFIDENCE, "TYPE_FP32", (1,)),
               IOTensor(interface.LABEL_NAME, "TYPE_STRING", (1,)),
               IOTensor(interface.PROBABILITIES, "TYPE_FP32", (width,)),
               IOTensor(interface.SELECTED, "TYPE_BOOL", (width,))]
    post_config = python_step(post_name, [IOTensor(interface.LOGITS, "TYPE_FP32", (width,))], outputs,
                              step_batching, SeqClsSettings(labels, options.multi_label, options.threshold))

    steps = [
        EnsembleStep(tok_name, {t.name: t.name for t in text_inputs},
                     {**{f.name: f.name for f in feeds}, interface.TRUNCATED: interface.TRUNCATED}),
        EnsembleStep(model_name, {f.name: f.name for f in feeds}, {logits_spec.name: interface.LOGITS}),
        EnsembleStep(post_name, {interface.LOGITS: interface.LOGITS}, {o.name: o.name for o in outputs}),
    ]
    ensemble_config = ensemble(name, text_inputs, outputs + [truncated], steps, mbs, {
        interface.PARAM_TASK: options.task.value,
        interface.PARAM_LABELS: json.dumps(list(labels), ensure_ascii=False),
        interface.PARAM_TEXT_PAIR: json.dumps(options.text_pair),
        interface.PARAM_MULTI_LABEL: json.dumps(options.multi_label),
        interface.PARAM_MAX_SEQ_LEN: json.dumps(tokenizer.max_seq_len),
    })

    model_files = {model_settings.model_file: serving_program.model_file}
    if serving_program.params_file:
        model_files[model_settings.params_file] = serving_program.params_file
    return RepositoryPlan(name, [
        ModelDirPlan(ensemble_config),
        ModelDirPlan(tokenizer_config, "tokenizer", {"vocab.txt": vocab_file}),
        ModelDirPlan(model_config, "model", model_files),
        ModelDirPlan(post_config, "postprocess_seq_cls"),
    ])
