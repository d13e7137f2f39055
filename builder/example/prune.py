"""Width pruning of an example model, the way DynaBERT's `width_mult` exports look.

Keeps the first `round(heads * width)` attention heads and `round(ffn * width)` FFN units of
every layer (DynaBERT reorders them by importance first and retrains; neither matters for
serving), and exports the static program beside the *original* config.json, as PaddleNLP's
pruning writes `width_mult_*/` exports. The builder must take its shapes from the program.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from serving_core.interface import Task

COPIED = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "label.txt", "intent_label.txt",
          "slot_label.txt", "config.json", "dev.txt", "data.txt")


def _sliced_linear(linear, rows: int | None = None, cols: int | None = None):
    import paddle

    weight = linear.weight.numpy()
    rows, cols = rows or weight.shape[0], cols or weight.shape[1]
    new = paddle.nn.Linear(rows, cols)
    new.weight.set_value(weight[:rows, :cols])
    bias = linear.bias.numpy()
    new.bias.set_value(bias[:cols] if cols != weight.shape[1] else bias)
    return new


def width_prune(encoder, width: float) -> None:
    """Prune every layer of a paddle.nn.TransformerEncoder in place."""
    for layer in encoder.layers:
        attention = layer.self_attn
        heads = max(1, round(attention.num_heads * width))
        columns = heads * attention.head_dim
        attention.q_proj = _sliced_linear(attention.q_proj, cols=columns)
        attention.k_proj = _sliced_linear(attention.k_proj, cols=columns)
        attention.v_proj = _sliced_linear(attention.v_proj, cols=columns)
        attention.out_proj = _sliced_linear(attention.out_proj, rows=columns)
        attention.num_heads = heads
        units = max(1, round(layer.linear1.weight.shape[1] * width))
        layer.linear1 = _sliced_linear(layer.linear1, cols=units)
        layer.linear2 = _sliced_linear(layer.linear2, rows=units)


def prune_example(model_dir: Path, task: Task, width: float, output: Path) -> Path:
    """Load an example model (checkpoint, or the intent_slot example's weights), prune, export."""
    import paddle

    from builder.source.export import load_dygraph_model
    from builder.source.detect import inspect_source
    from builder.example.intent_slot_example import load_joint_ernie

    if task is Task.INTENT_SLOT:
        model, specs = load_joint_ernie(model_dir), [paddle.static.InputSpec([None, None], "int32", "input_ids")]
        encoder = model.ernie.encoder
    else:
        model = load_dygraph_model(inspect_source(model_dir), task)
        specs = [paddle.static.InputSpec([None, None], "int64", "input_ids"),
                 paddle.static.InputSpec([None, None], "int64", "token_type_ids")]
        encoder = model.ernie.encoder
    width_prune(encoder, width)
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(paddle.jit.to_static(model, input_spec=specs, full_graph=True), str(output / "inference"))
    for name in COPIED:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, output / name)
    return output
