"""embedding: texts -> one FP32 vector per text (the program pools, the postprocess averages a
long text's windows and normalises: serving_core.embedding)."""
from __future__ import annotations

from serving_core import interface
from serving_core.embedding import EmbeddingSettings
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.windows import TokenizerMode, WindowSettings

from builder.specs.common import PlanInputs, ensemble_spec, outputs_by_rank
from builder.specs.seq_cls import default_stride


def plan(inputs: PlanInputs) -> EnsembleSpec:
    (pooled,) = outputs_by_rank(inputs, {2: 1}, "sentence encoder ([batch, dim])")[2]
    dim = pooled.shape[-1]
    if dim <= 0:
        raise inputs.fail(f"the program's output {pooled.name} does not fix the vector's length")
    options = inputs.options
    text = [IOTensor(interface.TEXT, "string", (1,))]
    outputs = [IOTensor(interface.EMBEDDING, "float32", (dim,))]
    settings = EmbeddingSettings(dim, options.pooling, options.normalize)
    if options.long_text != "windows":
        return ensemble_spec(inputs, text, WindowSettings(pad_to_max=options.gpu_onnxruntime),
                             [(pooled, (dim,), interface.POOLED)], [IOTensor(interface.POOLED, "float32", (dim,))],
                             outputs, settings)
    stride = options.stride if options.stride is not None else default_stride(inputs.tokenizer.max_seq_len)
    window = WindowSettings(TokenizerMode.WINDOWS.value, stride, options.max_windows)
    post_inputs = [IOTensor(interface.POOLED, "float32", (-1, dim)), IOTensor(interface.TEXT_WINDOWS, "int32", (1,))]
    return ensemble_spec(inputs, text, window, [(pooled, (-1, dim), interface.POOLED)], post_inputs,
                         [*outputs, IOTensor(interface.WINDOWS, "int32", ())],
                         EmbeddingSettings(dim, options.pooling, options.normalize, "mean"), per_token=False)
