"""Triton `config.pbtxt` files built from Triton's own schema (model_config.proto).

Every config is a `tritonclient.grpc.model_config_pb2.ModelConfig` message rendered with
protobuf's text_format: no string templates, so an invalid field fails at build time.
"""
from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving_core.batch_hold import BatchHold
from serving_core.parameters import to_parameters
from serving_core.spec import IOTensor


@dataclass(frozen=True)
class BatchingOptions:
    """Scheduling of one step.

    `max_queue_delay_us` None is the step's own default: 0 for CPU Python steps (measured by
    `benchmarks.run`: a delay adds itself to every lone request, while requests that queue
    up behind a busy CPU instance batch anyway), GPU_QUEUE_DELAY_US for the native GPU step.
    `hold_ms`: how long a batching Python model that answers clients itself (`<name>_direct`)
    keeps its instance after answering a batch (serving_core.batch_hold), so that the clients it
    answered join the next batch; 0: off. The ensemble's model step never holds (target.py).
    """

    max_batch_size: int = 64
    instances: int = 1
    max_queue_delay_us: int | None = None
    preferred_batch_sizes: tuple[int, ...] = ()
    hold_ms: float = 0.0

    def __post_init__(self):
        BatchHold(self.hold_ms)  # validates

    def queue_delay_us(self, default: int) -> int:
        return default if self.max_queue_delay_us is None else self.max_queue_delay_us


CPU_QUEUE_DELAY_US = 0
MODEL_HOLD_MS = 3.0  # the direct model's default hold (benchmarks/results/medium_hold.md)
GPU_QUEUE_DELAY_US = 1000  # a GPU batch costs about what one request does: worth waiting for


def default_model_batching() -> BatchingOptions:
    """The model steps' batching unless the build says otherwise: the direct model holds MODEL_HOLD_MS."""
    return BatchingOptions(hold_ms=MODEL_HOLD_MS)


_TRITON_TYPES = {"string": "TYPE_STRING", "bool": "TYPE_BOOL", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                 "float32": "TYPE_FP32"}


def triton_type(tensor: IOTensor) -> int:
    """The model_config.proto DataType of a spec tensor."""
    return mc.DataType.Value(_TRITON_TYPES[tensor.dtype])


def config_dims(tensor: IOTensor, max_batch_size: int) -> list[int]:
    """A tensor's `dims` in a config: without the batch axis where the model batches
    (max_batch_size > 0), with it spelled out (-1) where it does not."""
    if max_batch_size > 0:
        if not tensor.batched:
            raise ValueError(f"{tensor.name} has no batch axis; it needs a config with max_batch_size 0")
        return list(tensor.dims)
    return [-1, *tensor.dims] if tensor.batched else list(tensor.dims)


def _input(tensor: IOTensor, max_batch_size: int) -> mc.ModelInput:
    return mc.ModelInput(name=tensor.name, data_type=triton_type(tensor), dims=config_dims(tensor, max_batch_size),
                         allow_ragged_batch=tensor.ragged and max_batch_size > 0)


def _output(tensor: IOTensor, max_batch_size: int) -> mc.ModelOutput:
    return mc.ModelOutput(name=tensor.name, data_type=triton_type(tensor), dims=config_dims(tensor, max_batch_size))


def _set_parameters(config: mc.ModelConfig, parameters: dict[str, str]) -> None:
    for key, value in parameters.items():
        config.parameters[key].string_value = value


def python_step(name: str, inputs: list[IOTensor], outputs: list[IOTensor], batching: BatchingOptions,
                settings=None, extra_parameters: dict[str, str] | None = None) -> mc.ModelConfig:
    """A Python-backend model on CPU, with dynamic batching where max_batch_size > 0; `settings`
    (a dataclass, or a tuple of them) go to `parameters`."""
    size = batching.max_batch_size
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=size,
                            input=[_input(t, size) for t in inputs], output=[_output(t, size) for t in outputs])
    config.instance_group.append(mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU,
                                                       count=batching.instances))
    if size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = batching.queue_delay_us(CPU_QUEUE_DELAY_US)
        config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)
        if batching.hold_ms > 0:
            _set_parameters(config, to_parameters(BatchHold(batching.hold_ms)))
    for item in settings if isinstance(settings, tuple) else (settings,):
        if item is not None:
            _set_parameters(config, to_parameters(item))
    _set_parameters(config, extra_parameters or {})
    return config


@dataclass(frozen=True)
class EnsembleStep:
    model_name: str
    input_map: dict[str, str]  # step model input -> ensemble tensor
    output_map: dict[str, str]  # step model output -> ensemble tensor


def ensemble(name: str, inputs: list[IOTensor], outputs: list[IOTensor], steps: list[EnsembleStep],
             max_batch_size: int, parameters: dict[str, str]) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size,
                            input=[_input(t, max_batch_size) for t in inputs],
                            output=[_output(t, max_batch_size) for t in outputs])
    for step in steps:
        config.ensemble_scheduling.step.append(mc.ModelEnsembling.Step(
            model_name=step.model_name, model_version=-1,
            input_map=step.input_map, output_map=step.output_map))
    _set_parameters(config, parameters)
    return config


def render(config: mc.ModelConfig) -> str:
    """config.pbtxt text."""
    return text_format.MessageToString(config, as_utf8=True)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def native_onnxruntime_step(name: str, inputs: list[IOTensor], outputs: list[IOTensor], batching: BatchingOptions,
                            tensorrt: bool = False, fp16: bool = False) -> mc.ModelConfig:
    """Triton's own onnxruntime backend on GPU, for users' NGC containers (not in the bundled server).

    Inputs are not ragged: the tokenizer pads every row to max_seq_len, so the dynamic
    batcher can join requests. TensorRT (optionally FP16) as the ORT execution accelerator.
    """
    size = batching.max_batch_size
    config = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=size,
                            input=[_input(t, size) for t in inputs], output=[_output(t, size) for t in outputs],
                            default_model_filename="model.onnx")
    config.instance_group.append(mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=batching.instances))
    config.dynamic_batching.max_queue_delay_microseconds = batching.queue_delay_us(GPU_QUEUE_DELAY_US)
    config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)
    if tensorrt:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = "FP16" if fp16 else "FP32"
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    return config
