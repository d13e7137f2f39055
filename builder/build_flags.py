"""`builder build`'s flags and the BuildOptions field each one sets, declared once.

Each Flag names the option it fills (a BuildOptions field, or `group.field` of a nested options
dataclass); `add_build_flags` renders them into argparse and `build_options` reads the parsed
arguments back into a BuildOptions. A new option is one Flag here and one field there.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from serving_core.embedding import POOLINGS
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind
from serving_core.shape_buckets import WARM_UP_TOKENS
from builder.triton.config import MODEL_HOLD_MS


@dataclass(frozen=True)
class Flag:
    name: str  # the command-line flag, e.g. "--max-seq-len"
    option: str  # the BuildOptions field it sets, or "<nested options field>.<field>"
    help: str
    group: str | None = None  # the --help section
    convert: Callable[[Any], Any] | None = None  # argument -> option value (None stays None)
    argparse: dict = field(default_factory=dict)  # type, default, choices, action...


def _path(value):
    return Path(value)


TOKEN_TASKS = "token_cls, qa and intent_slot"
WINDOWS = "long text in windows (token_cls, qa; seq_cls and embedding with --long-text windows)"
EMBEDDING = "sentence embeddings (--task embedding)"
INT8 = "INT8 (ONNX Runtime or OpenVINO)"
GPU = "GPU containers (seq_cls; not loadable in the bundled CPU server)"
PADDLE_SERVING = "Paddle Serving target"
FLAGS = (
    Flag("--task", "task", "what the model does", convert=Task,
         argparse={"choices": [t.value for t in Task], "required": True}),
    Flag("--name", "name", "ensemble name (default: the model directory's name)"),
    Flag("--tokenizer", "tokenizer_dir", "directory with vocab.txt / tokenizer_config.json, if not beside the model",
         convert=_path),
    Flag("--program", "program_file", "the program file to build, when MODEL holds several (e.g. float32.pdmodel, "
         "int8 or quant_emb in a compression recipe's width_mult_* folder, or a MindSpore checkpoint's name)"),
    Flag("--labels", "labels_file", "label file, one label a line (default: label.txt or config id2label; "
         "intent_slot: intent_label.txt)", convert=_path),
    Flag("--slot-labels", "slot_labels_file", "intent_slot: slot tag file (default: slot_label.txt)", convert=_path),
    Flag("--max-seq-len", "max_seq_len", "tokens per text incl. [CLS]/[SEP]; longer text is truncated and flagged "
         "(default: min(128, max_position_embeddings))", argparse={"type": int}),
    Flag("--runtime", "runtime", "engine of the model step; auto: every engine that can run the program is "
         "proven against the source model (a quantization-aware program: against itself on Paddle) and timed on "
         "it, and the fastest correct one is kept (default: %(default)s)",
         convert=lambda value: None if value == "auto" else RuntimeKind(value),
         argparse={"choices": ["auto", *(r.value for r in RuntimeKind)], "default": "auto"}),
    Flag("--expect", "expect", "auto: the traffic to be fast for: short (single short texts, latency), long (full "
         "batches of max_seq_len texts, throughput), mixed, or a file of typical texts (default: %(default)s)",
         argparse={"default": "mixed"}),
    Flag("--precision", "precision", "paddle runtime: bf16 uses oneDNN bfloat16 where the CPU has "
         "AMX/AVX512-BF16 (refused elsewhere) (default: %(default)s)",
         argparse={"choices": ["fp32", "bf16"], "default": "fp32"}),
    Flag("--threads", "num_threads", "math threads per model instance (default: %(default)s)",
         argparse={"type": int, "default": 2}),
    Flag("--direct", "direct", "seq_cls, embedding: also serve <name>_direct, one batched Python model doing what "
         "the three steps do, with no hops between them (faster; per-text values are [B, 1], so the published clients "
         "keep the ensemble; loads the engine a second time)", argparse={"action": "store_true"}),
    Flag("--instances", "model_batching.instances", "model step instances (default: %(default)s)",
         argparse={"type": int, "default": 1}),
    Flag("--max-batch-size", "model_batching.max_batch_size", "texts per batch (default: %(default)s)",
         argparse={"type": int, "default": 64}),
    Flag("--queue-delay-us", "model_batching.max_queue_delay_us", "model step's dynamic batching: longest wait "
         "for more requests to fill a batch (default: 0 on CPU, where requests queued behind a busy instance "
         "batch anyway; 1000 for the GPU step)", argparse={"type": int}),
    Flag("--batch-hold-ms", "model_batching.hold_ms", "--direct: after answering a batch of two or more requests, "
         "the direct model keeps its instance this long (never over 5%% of the batch's own time), so the clients it "
         "answered join the next batch instead of splitting into a lone request and the rest; 0: off "
         "(default: %(default)s)",
         argparse={"type": float, "default": MODEL_HOLD_MS}),
    Flag("--max-batch-tokens", "max_batch_tokens", "the model step runs what the batcher joined in groups of at "
         "most this many padded tokens (texts or windows x longest); CPU throughput per text falls beyond a few "
         "thousand; 0: one batch (default: %(default)s)", argparse={"type": int, "default": 4096}),
    Flag("--shape-buckets", "shape_buckets", "the model step pads each batch it runs to a bucket shape: lengths to "
         "a multiple of this many tokens, texts to 1, 2, 3, 4, 6, 8, 12, ...; the buckets of up to "
         f"{WARM_UP_TOKENS} tokens are run once when it loads. For Paddle's oneDNN kernels, which keep about 4.5 MB "
         "(Medium) for every new batch shape they meet: buckets bound that memory, at the cost of the padded "
         "compute (10-21%% fewer texts/s measured on Medium, docs/benchmarks.md); 0: off (default: %(default)s)",
         argparse={"type": int, "default": 0}),
    Flag("--text-pair", "text_pair", "sentence-pair model: adds the TEXT_PAIR input",
         argparse={"action": "store_true"}),
    Flag("--multi-label", "multi_label", "sigmoid + threshold instead of softmax", argparse={"action": "store_true"}),
    Flag("--threshold", "threshold", "multi-label threshold (default: %(default)s)",
         argparse={"type": float, "default": 0.5}),
    Flag("--int32", "int_dtype", "export checkpoints with int32 id inputs",
         convert=lambda on: "int32" if on else "int64", argparse={"action": "store_true"}),
    Flag("--overwrite", "overwrite", "replace models of the same names in OUTPUT", argparse={"action": "store_true"}),
    Flag("--target", "target", "triton: OUTPUT is a Triton model repository; paddle-serving: OUTPUT/<name>/ is a "
         "Paddle Serving pipeline service; all: OUTPUT/triton/ and OUTPUT/paddle_serving/<name>/ "
         "(default: %(default)s)", argparse={"choices": ["triton", "paddle-serving", "all"], "default": "triton"}),
    Flag("--quantize", "quantize", "INT8 of the ONNX model: dynamic on ONNX Runtime (the choice of auto), static "
         "through NNCF with --runtime openvino; checked against the source model on the calibration texts before "
         "anything is written", INT8, argparse={"choices": ["int8"]}),
    Flag("--quantize-per-channel", "quantize_options.per_channel", "per-channel weight scales", INT8,
         argparse={"action": "store_true"}),
    Flag("--quantize-reduce-range", "quantize_options.reduce_range", "weights in 7 bits, so that CPUs without VNNI "
         "or AMX (AVX2, older AVX-512) do not saturate; auto: on where the building CPU has neither. A model "
         "quantized in 8 bits warns when it loads on such a CPU (default: %(default)s)", INT8,
         argparse={"choices": ["auto", "on", "off"], "default": "auto"}),
    Flag("--quantize-embeddings", "quantize_options.embeddings", "INT8 embedding tables too (Gather)", INT8,
         argparse={"action": "store_true"}),
    Flag("--calibration-texts", "quantize_options.calibration_file", "texts for the INT8 check (default: "
         "MODEL/dev.txt or data.txt)", INT8, convert=_path),
    Flag("--min-agreement", "quantize_options.min_agreement", "fail the build when INT8 keeps fewer argmax "
         "decisions of the source model (embedding: fewer texts' nearest neighbours) (default: %(default)s)", INT8,
         argparse={"type": float, "default": 0.99}),
    Flag("--gpu-onnxruntime", "gpu_onnxruntime", "model step = Triton's native onnxruntime backend on GPU with "
         "dynamic batching (runs on ONNX Runtime; auto picks it)", GPU, argparse={"action": "store_true"}),
    Flag("--gpu-tensorrt", "gpu_tensorrt", "with the TensorRT execution accelerator", GPU,
         argparse={"action": "store_true"}),
    Flag("--gpu-fp16", "gpu_fp16", "TensorRT in FP16", GPU, argparse={"action": "store_true"}),
    Flag("--tag-scheme", "tag_scheme", "tag scheme (default: from the labels)", TOKEN_TASKS,
         argparse={"choices": ["bio", "bioes", "io"]}),
    Flag("--pooling", "pooling", "how a window's token vectors make its vector: cls (the last layer's [CLS]), "
         "mean (of the real tokens) or pooler (the encoder's tanh(dense([CLS])), PaddleNLP's semantic-search "
         "models), exported with the checkpoint (default: cls; a static export answers its own output)", EMBEDDING,
         argparse={"choices": list(POOLINGS)}),
    Flag("--normalize", "normalize", "L2-normalise the vectors (on) or answer them as computed (off) (default: "
         "a sentence-transformers model's Normalize module says; on for other models)", EMBEDDING,
         convert=lambda value: value == "on", argparse={"choices": ["on", "off"]}),
    Flag("--long-text", "long_text", "seq_cls, embedding: a text longer than --max-seq-len is cut and answered "
         "with truncated: true (truncate), or read whole in windows --stride tokens apart whose answers make one "
         "answer (seq_cls: by --long-text-aggregate; embedding: the mean vector, then normalised), its `windows` "
         "saying how many were read (windows) (default: %(default)s)", WINDOWS,
         argparse={"choices": ["truncate", "windows"], "default": "truncate"}),
    Flag("--long-text-aggregate", "long_text_aggregate", "seq_cls windows: mean (the windows' mean logits, then "
         "softmax or sigmoid; single-label default) or max (each class's highest probability over the windows; "
         "multi-label default)", WINDOWS, argparse={"choices": ["mean", "max"]}),
    Flag("--stride", "stride", "step between window starts over long text (PaddleNLP's doc_stride; default: "
         "token_cls (max_seq_len-2)//2, qa max_seq_len//4, seq_cls 3/4 of a window)", WINDOWS,
         argparse={"type": int}),
    Flag("--max-windows", "max_windows", "windows per text; a longer text is cut (to a generous character bound "
         "before tokenizing, then to this many windows) and answered with truncated: true; 0: no bound "
         "(default: %(default)s)", WINDOWS, argparse={"type": int, "default": 32}),
    Flag("--max-question-len", "max_question_len", "qa: question tokens kept (default: %(default)s)", TOKEN_TASKS,
         argparse={"type": int, "default": 64}),
    Flag("--max-answer-len", "max_answer_len", "qa: longest answer in tokens (default: %(default)s)", TOKEN_TASKS,
         argparse={"type": int, "default": 30}),
    Flag("--n-best", "n_best", "qa: start/end candidates per window (default: %(default)s)", TOKEN_TASKS,
         argparse={"type": int, "default": 20}),
    Flag("--no-answer-threshold", "no_answer_threshold", "qa: answer \"\" when the best span's probability is "
         "below this", TOKEN_TASKS, argparse={"type": float}),
    Flag("--pipeline-batch-size", "pipeline.batch_size", "requests auto-batched together (default: %(default)s)",
         PADDLE_SERVING, argparse={"type": int, "default": 8}),
    Flag("--pipeline-batch-timeout-ms", "pipeline.auto_batching_timeout_ms", "auto_batching_timeout "
         "(default: %(default)s)", PADDLE_SERVING, argparse={"type": int, "default": 2}),
)


def _dest(flag: Flag) -> str:
    return flag.name.lstrip("-").replace("-", "_")


def add_build_flags(parser: argparse.ArgumentParser) -> None:
    """Every Flag as an argparse option, in its --help section."""
    groups = {None: parser}
    for flag in FLAGS:
        if flag.group not in groups:
            groups[flag.group] = parser.add_argument_group(flag.group)
        groups[flag.group].add_argument(flag.name, dest=_dest(flag), help=flag.help, **flag.argparse)


def build_options(args: argparse.Namespace):
    """The BuildOptions the parsed flags declare; the tokenizer and postprocess steps batch as
    many texts as the model step (one instance, no queue delay)."""
    from builder.options import BuildOptions

    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for flag in FLAGS:
        value = getattr(args, _dest(flag))
        if flag.convert is not None and (value is not None or flag.argparse.get("action") == "store_true"):
            value = flag.convert(value)
        owner, _, name = flag.option.rpartition(".")
        (nested.setdefault(owner, {}) if owner else top)[name] = value
    defaults = BuildOptions(task=top["task"])
    try:  # the options' own checks (__post_init__) refuse bad values: the user's fault, not a crash
        for owner, values in nested.items():
            top[owner] = dataclasses.replace(getattr(defaults, owner), **values)
        top["step_batching"] = dataclasses.replace(defaults.step_batching,
                                                   max_batch_size=top["model_batching"].max_batch_size)
        return BuildOptions(**top)
    except ValueError as exc:
        raise UserError(f"bad option: {exc}") from exc
