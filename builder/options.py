"""Typed build options (what `builder build` flags become)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from builder.paddle_serving.service import PipelineOptions
from builder.engine.quantize import QuantizeOptions
from builder.triton.config import BatchingOptions, default_model_batching
from builder.triton.target import TritonOptions


@dataclass(frozen=True)
class BuildOptions:
    task: Task
    name: str | None = None  # ensemble name; default: from the model directory
    max_seq_len: int | None = None  # default: min(128, the model's max_position_embeddings)
    runtime: RuntimeKind | None = None  # None: auto, the fastest engine whose answers equal the source model's
    expect: str = "mixed"  # auto: the traffic to be fast for: short, long, mixed, or a texts file
    num_threads: int = 2  # math threads per model instance
    max_batch_tokens: int = 4096  # model step: run larger batches in groups of at most this many tokens (0: off)
    shape_buckets: int = 0  # model step: pad lengths to multiples of this many tokens, rows to 1, 2, 3, 4, 6, 8, ...
    # and warm those buckets at load (0: off; serving_core.shape_buckets)
    precision: str = "fp32"  # paddle runtime: "bf16" where the CPU has it
    quantize: str | None = None  # "int8": ONNX Runtime dynamic quantization, checked on calibration texts
    quantize_options: QuantizeOptions = field(default_factory=QuantizeOptions)
    text_pair: bool = False  # sentence-pair model: adds the TEXT_PAIR input
    multi_label: bool = False  # sigmoid + threshold instead of softmax + argmax
    threshold: float = 0.5
    int_dtype: str = "int64"  # dtype of exported id inputs (checkpoints only)
    tag_scheme: str | None = None  # token_cls / intent_slot: bio, bioes, io; default: from the labels
    stride: int | None = None  # windows (token_cls, qa, seq_cls --long-text windows): step between window starts
    max_windows: int = 32  # windows per text (longer text is cut and flagged); 0: no bound
    long_text: str = "truncate"  # seq_cls, embedding: "windows" reads a longer text in windows, answers aggregated
    long_text_aggregate: str | None = None  # seq_cls windows: mean (logits) or max (probabilities); default by task
    pooling: str | None = None  # embedding: how a checkpoint's tokens are pooled (serving_core.embedding.POOLINGS);
    # None: cls for a checkpoint, a static program's own output
    normalize: bool | None = None  # embedding: L2-normalise the vectors; None: as the model says
    max_question_len: int = 64  # qa
    max_answer_len: int = 30  # qa
    n_best: int = 20  # qa
    no_answer_threshold: float | None = None  # qa: answer "" under this probability
    model_batching: BatchingOptions = field(default_factory=default_model_batching)
    step_batching: BatchingOptions = field(default_factory=lambda: BatchingOptions(max_queue_delay_us=0))
    direct: bool = False  # seq_cls, embedding: also a batched <name>_direct model (tokenizer, engine, postprocess)
    gpu_onnxruntime: bool = False  # model step = Triton's onnxruntime backend on GPU (NGC containers)
    gpu_tensorrt: bool = False  # ... with the TensorRT execution accelerator
    gpu_fp16: bool = False  # ... in FP16
    tokenizer_dir: Path | None = None
    program_file: str | None = None  # which program, when the model directory holds several
    labels_file: Path | None = None
    slot_labels_file: Path | None = None
    overwrite: bool = False
    target: str = "triton"  # "triton": OUTPUT is a Triton repository; "paddle-serving": OUTPUT/<name>/ is a
    # pipeline service; "all": OUTPUT/triton/ and OUTPUT/paddle_serving/<name>/
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)

    def __post_init__(self):
        if self.shape_buckets < 0:
            raise ValueError(f"shape_buckets must be >= 0, got {self.shape_buckets}")

    def triton(self) -> TritonOptions:
        return TritonOptions(self.model_batching, self.step_batching, self.gpu_onnxruntime, self.gpu_tensorrt,
                             self.gpu_fp16, self.direct)
