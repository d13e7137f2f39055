"""MindSpore TinyBERT students (the model zoo's task distillation), read without MindSpore.

A student directory holds the task-distilled checkpoint (`tiny_bert_<epoch>_<step>.ckpt`, or
`eval_model.ckpt`), the run's yaml (its `td_student_net_cfg` block: sizes and heads) and the
vocab.txt it tokenized with. The checkpoint is MindSpore's public `Checkpoint` protobuf message
(tag, dims, dtype, raw little-endian bytes; `crc_check=True` appends b"crc_num" and the CRC-32),
parsed here with protobuf and numpy. Its tensors are mapped onto PaddleNLP's
`TinyBertForSequenceClassification` with MindSpore's LayerNorm epsilon (1e-7) and its
tanh-approximated GELU, so the exported program computes what MindSpore does.
"""
from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

import numpy as np

from serving_core.errors import UserError

from builder.source.user_files import TEXT_LIMIT, checked_int, checked_size, read_yaml

CONFIG_BLOCK = "td_student_net_cfg"
LAYER_NORM_EPSILON = 1e-7  # MindSpore nn.LayerNorm as the zoo's TinyBERT builds it
_CRC_MARK = b"crc_num"
_CRC_TRAILER = len(_CRC_MARK) + 10  # the mark, then the CRC-32 of the message as 10 big-endian bytes
_DTYPES = {"Float32": np.float32, "Float16": np.float16, "Float64": np.float64, "Int32": np.int32,
           "Int64": np.int64, "Bool": np.bool_}


def _checkpoint_class():
    """MindSpore's checkpoint.proto (`Checkpoint`, `TensorProto`), declared from its public schema."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="ernie_serving_mindspore_checkpoint.proto",
                                               package="ernie_serving_ms", syntax="proto2")
    tensor = proto.message_type.add(name="TensorProto")
    tensor.field.add(name="dims", number=1, label=F.LABEL_REPEATED, type=F.TYPE_INT64)
    tensor.field.add(name="tensor_type", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    tensor.field.add(name="tensor_content", number=3, label=F.LABEL_OPTIONAL, type=F.TYPE_BYTES)
    map_tensor = proto.message_type.add(name="MapTensorProto")
    map_tensor.field.add(name="tensor", number=1, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE,
                         type_name=".ernie_serving_ms.TensorProto")
    checkpoint = proto.message_type.add(name="Checkpoint")
    value = checkpoint.nested_type.add(name="Value")
    value.field.add(name="tag", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    value.field.add(name="tensor", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                    type_name=".ernie_serving_ms.TensorProto")
    value.field.add(name="maptensor", number=3, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                    type_name=".ernie_serving_ms.MapTensorProto")
    checkpoint.field.add(name="value", number=1, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE,
                         type_name=".ernie_serving_ms.Checkpoint.Value")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("ernie_serving_ms.Checkpoint"))


def read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a MindSpore .ckpt by its tag, shaped (a tensor split over several values
    is joined), as float32."""
    data = Path(path).read_bytes()
    if data[-_CRC_TRAILER:].startswith(_CRC_MARK):
        data, crc = data[:-_CRC_TRAILER], int.from_bytes(data[-10:], "big")
        if zlib.crc32(data) != crc:
            raise UserError("the checkpoint's CRC does not match its content: the file is corrupt; copy it again",
                            str(path))
    message = _checkpoint_class()()
    unreadable = UserError("cannot be read as a MindSpore checkpoint: it is encrypted (saved with enc_key) or not "
                           "a checkpoint. Decrypt it with mindspore.load_checkpoint(..., dec_key=...) and save it "
                           "again without enc_key", str(path))
    try:
        message.ParseFromString(data)
    except Exception:
        raise unreadable from None
    parts: dict[str, list[np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for value in message.value:
        tensor = value.tensor
        if not isinstance(value.tag, str) or not value.tag or not value.HasField("tensor") \
                or tensor.tensor_type not in _DTYPES:
            raise unreadable
        dtype = np.dtype(_DTYPES[tensor.tensor_type]).newbyteorder("<")
        parts.setdefault(value.tag, []).append(np.frombuffer(tensor.tensor_content, dtype=dtype))
        shapes.setdefault(value.tag, tuple(tensor.dims))
    if not parts:
        raise unreadable
    try:
        return {tag: np.concatenate(chunks).reshape(shapes[tag]).astype(np.float32) for tag, chunks in parts.items()}
    except ValueError:
        raise unreadable from None


# The student's parameters (zoo names, after `student_tensors` normalises them) -> PaddleNLP
# TinyBertForSequenceClassification's, and whether a Dense weight ([out, in]) is transposed.
_EMBEDDINGS = {"bert.bert_embedding_lookup.embedding_table": "tinybert.embeddings.word_embeddings.weight",
               "bert.bert_embedding_postprocessor.embedding_table": "tinybert.embeddings.token_type_embeddings.weight",
               "bert.bert_embedding_postprocessor.full_position_embeddings":
                   "tinybert.embeddings.position_embeddings.weight",
               "bert.bert_embedding_postprocessor.layernorm.gamma": "tinybert.embeddings.layer_norm.weight",
               "bert.bert_embedding_postprocessor.layernorm.beta": "tinybert.embeddings.layer_norm.bias"}
_LAYER = {"attention.attention.query_layer": "self_attn.q_proj", "attention.attention.key_layer": "self_attn.k_proj",
          "attention.attention.value_layer": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
          "attention.output.layernorm": "norm1", "intermediate": "linear1", "output.dense": "linear2",
          "output.layernorm": "norm2"}
_HEAD = {"bert.dense": "tinybert.pooler.dense", "dense_1": "classifier"}
_SUFFIXES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


# Tensors the config is read from: a checkpoint without them is not a whole student.
_REQUIRED = ("bert.bert_embedding_lookup.embedding_table", "bert.bert_encoder.layers.0.intermediate.weight",
             "bert.bert_embedding_postprocessor.full_position_embeddings",
             "bert.bert_embedding_postprocessor.embedding_table")


def paddle_name(name: str) -> tuple[str, bool] | None:
    """(PaddleNLP's name, transpose) for a student parameter; None for a name the student has not."""
    if name in _EMBEDDINGS:
        return _EMBEDDINGS[name], False
    base, _, suffix = name.rpartition(".")
    if suffix not in _SUFFIXES:
        return None
    layer = re.fullmatch(r"bert\.bert_encoder\.layers\.(\d+)\.(.+)", base)
    if layer and layer.group(2) in _LAYER:
        target = f"tinybert.encoder.layers.{layer.group(1)}.{_LAYER[layer.group(2)]}"
    elif base in _HEAD:
        target = _HEAD[base]
    else:
        return None
    return f"{target}.{_SUFFIXES[suffix]}", suffix == "weight" and "layernorm" not in base


# The zoo's current `EmbeddingPostprocessor` holds the token type and position tables as
# `nn.Embedding` cells; its older form held the same tensors as plain parameters.
_CELL_LAYOUT = {"bert.bert_embedding_postprocessor.token_type_embedding.embedding_table":
                    "bert.bert_embedding_postprocessor.embedding_table",
                "bert.bert_embedding_postprocessor.full_position_embedding.embedding_table":
                    "bert.bert_embedding_postprocessor.full_position_embeddings"}
EMBEDDING_LAYOUTS = ("plain parameters (the zoo's older EmbeddingPostprocessor)",
                     "nn.Embedding cells (the zoo's current EmbeddingPostprocessor)")


def _student_name(tag: str) -> str:
    name = re.sub(r"^bert\.", "", tag.replace("tinybert_", "bert_"))
    return _CELL_LAYOUT.get(name, name)


def student_tensors(path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors under the student's names, normalised as the zoo's own eval does
    (`tinybert_` read as `bert_`, the task-distillation cell's leading `bert.` dropped), the
    current layout's embedding cells under the older layout's names."""
    tensors = read_checkpoint(path)
    named = {_student_name(tag): value for tag, value in tensors.items()}
    if len(named) < len(tensors):
        raise UserError("holds the embedding tables twice, as plain parameters and as nn.Embedding cells; "
                        "save the student from one network", str(path))
    return named


def embedding_layout(path: Path) -> str:
    """Which of EMBEDDING_LAYOUTS the checkpoint's embedding tables are saved in."""
    tags = {re.sub(r"^bert\.", "", tag.replace("tinybert_", "bert_")) for tag in read_checkpoint(path)}
    return EMBEDDING_LAYOUTS[bool(tags & _CELL_LAYOUT.keys())]


def find_student(directory: Path, chosen: str | None = None) -> tuple[Path, Path] | None:
    """(checkpoint, yaml) of a MindSpore student directory; None when it holds no .ckpt."""
    checkpoints = sorted(Path(directory).glob("*.ckpt"))
    if not checkpoints:
        return None
    if chosen is not None:
        checkpoints = [c for c in checkpoints if chosen in (c.name, c.stem)] or checkpoints
    if len(checkpoints) > 1:
        raise UserError(f"holds {len(checkpoints)} MindSpore checkpoints ({', '.join(c.name for c in checkpoints)}); "
                        "choose one with --program NAME", str(directory))
    configs = [p for p in sorted(Path(directory).glob("*.y*ml")) if p.is_file()
               and CONFIG_BLOCK.encode() in p.read_bytes()[:TEXT_LIMIT] and checked_size(p, TEXT_LIMIT, "yaml file")]
    if len(configs) != 1:
        found = ", ".join(p.name for p in configs) or "none"
        raise UserError(f"a MindSpore checkpoint needs the yaml of its task-distillation run (the zoo's "
                        f"td_config/td_config_<task>.yaml, with its {CONFIG_BLOCK} block) beside it; found: {found}",
                        str(directory))
    return checkpoints[0], configs[0]


def student_config(checkpoint: Path, config_file: Path) -> dict:
    """PaddleNLP TinyBertConfig settings from the yaml's student block, checked against the
    checkpoint's tensor shapes (a yaml from another run is refused)."""
    run = read_yaml(config_file, "yaml file") or {}
    block = run.get(CONFIG_BLOCK) if isinstance(run, dict) else None
    if not isinstance(block, dict):
        raise UserError(f"{CONFIG_BLOCK} is not a block of settings", str(config_file))
    weights = student_tensors(checkpoint)
    if "dense_1.weight" not in weights and any("bert_embedding_lookup" in n for n in weights):
        raise UserError("no classifier (bert.dense_1): this is a general-distillation checkpoint; run task "
                        "distillation (the zoo's run_task_distill) and build its checkpoint", str(checkpoint))
    unknown = sorted(n for n in weights if paddle_name(n) is None)
    missing = [n for n in _REQUIRED if n not in weights]
    if missing:
        raise UserError(f"the student has no {', '.join(missing)}: the checkpoint is incomplete", str(checkpoint))
    if unknown or "dense_1.weight" not in weights:
        raise UserError(f"parameters a TinyBERT student does not have: {', '.join(unknown[:5]) or 'no dense_1'}"
                        f"{' ...' if len(unknown) > 5 else ''}; only the zoo's task-distilled students "
                        "(BertModelCLS) are read", str(checkpoint))
    words = weights["bert.bert_embedding_lookup.embedding_table"]
    config = {"vocab_size": words.shape[0], "hidden_size": words.shape[1],
              "num_hidden_layers": 1 + max(int(n.split(".")[3]) for n in weights if ".bert_encoder.layers." in n),
              "intermediate_size": weights["bert.bert_encoder.layers.0.intermediate.weight"].shape[0],
              "max_position_embeddings": weights["bert.bert_embedding_postprocessor.full_position_embeddings"].shape[0],
              "type_vocab_size": weights["bert.bert_embedding_postprocessor.embedding_table"].shape[0]}
    differ = [f"{key} {block[key]} (the weights: {value})" for key, value in config.items()
              if key in block and checked_int(block, key, config_file) != value]
    if differ:
        raise UserError(f"the yaml's {CONFIG_BLOCK} does not describe this checkpoint: {'; '.join(differ)}; use the "
                        "yaml of the run that wrote it", str(config_file))
    heads = checked_int(block, "num_attention_heads", config_file) or 0
    if heads <= 0 or config["hidden_size"] % heads:
        raise UserError(f"{CONFIG_BLOCK}.num_attention_heads must divide hidden_size {config['hidden_size']} "
                        "(the weights do not tell the number of heads)", str(config_file))
    if str(block.get("hidden_act", "gelu")) != "gelu":
        raise UserError(f"hidden_act {block['hidden_act']!r}: only the zoo's gelu is read", str(config_file))
    return {**config, "num_attention_heads": heads, "num_labels": weights["dense_1.weight"].shape[0],
            "hidden_act": "gelu", "layer_norm_eps": LAYER_NORM_EPSILON, "pad_token_id": 0,
            "architectures": ["TinyBertForSequenceClassification"], "model_type": "tinybert"}


def tanh_gelu(x):
    """MindSpore's GELU (tanh approximation), written out: paddle2onnx 2.1 converts
    `gelu(approximate=True)` to the exact erf form, which ONNX Runtime would then serve."""
    import paddle

    return 0.5 * x * (1.0 + paddle.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def load_student(checkpoint: Path, config: dict):
    """PaddleNLP's TinyBertForSequenceClassification holding the student's weights, computing as
    MindSpore does (LayerNorm epsilon 1e-7, tanh-approximated GELU), in eval mode."""
    import paddle
    from paddlenlp.transformers import TinyBertConfig, TinyBertForSequenceClassification

    settings = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    model = TinyBertForSequenceClassification(TinyBertConfig(**settings, hidden_dropout_prob=0.0,
                                                             attention_probs_dropout_prob=0.0))
    state = model.state_dict()
    for name, value in student_tensors(checkpoint).items():
        target, transpose = paddle_name(name)
        state[target].set_value(value.T if transpose else value)
    for layer in model.tinybert.encoder.layers:
        layer.activation = tanh_gelu
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.LayerNorm):
            layer._epsilon = LAYER_NORM_EPSILON
    model.eval()
    return model
