"""A sentence-transformers directory, read as data: its modules, and its HF BERT weights under
PaddleNLP's BertModel names. And PaddleNLP's semantic-search checkpoints, whose layout is the same
kind of thing: an encoder, its pooler, a projection, L2 normalisation.

`SentenceTransformer.save` writes `modules.json` (the modules in order: Transformer at path "",
Pooling, optional Dense layers, optional Normalize), each module's config in its folder, the
encoder's `config.json` (model_type bert) and `model.safetensors`, and `tokenizer.json` (the
Rust tokenizer HF runs; PaddleNLP's BertTokenizerFast reads the same file). Older versions name
the modules `sentence_transformers.models.*`, flag the pooling (`pooling_mode_mean_tokens`...)
and keep max_seq_length in `sentence_bert_config.json`; newer ones write `pooling_mode` and the
length as the tokenizer's `model_max_length`. Both are read. Nothing here imports torch or runs
the directory's code: a module whose type is not one of these four is refused by name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving_core.errors import UserError

from builder.source.user_files import read_json, safetensors_shapes, safetensors_tensors

MODULES_FILE = "modules.json"
TOKENIZER_JSON = "tokenizer.json"
# A Dense module's activation_function -> the paddle.nn.functional name it computes.
ACTIVATIONS = {"torch.nn.modules.activation.Tanh": "tanh", "torch.nn.modules.linear.Identity": "",
               "torch.nn.modules.activation.ReLU": "relu", "torch.nn.modules.activation.Sigmoid": "sigmoid",
               "torch.nn.modules.activation.GELU": "gelu"}
_POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                  "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
SUPPORTED_POOLING = ("cls", "mean")


@dataclass(frozen=True)
class DenseLayer:
    """A Dense module: y = activation(x @ weight.T + bias), weight [out, in] as torch keeps it."""

    weight: np.ndarray
    bias: np.ndarray | None
    activation: str  # a paddle.nn.functional name, "" for identity


@dataclass(frozen=True)
class SentenceEncoderLayout:
    """What the directory's modules compute after the encoder."""

    pooling: str  # serving_core.embedding.POOLINGS
    dense: tuple[DenseLayer, ...]
    normalize: bool
    max_seq_length: int | None  # what sentence-transformers cuts texts to (tokens, with [CLS] and [SEP])
    encoder_prefix: str = ""  # what the encoder's tensor names start with in the checkpoint ("ptm.")

    @property
    def dim(self) -> int | None:
        return int(self.dense[-1].weight.shape[0]) if self.dense else None


def is_sentence_transformers(directory: Path) -> bool:
    return (Path(directory) / MODULES_FILE).is_file()


def _kind(module: dict) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def read_layout(directory: Path) -> SentenceEncoderLayout:
    """The modules of a sentence-transformers directory, checked: one Transformer at the root, one
    Pooling (cls or mean), Dense layers (safetensors weights), at most one Normalize, in that order."""
    directory = Path(directory)
    path = directory / MODULES_FILE
    modules = read_json(path, "sentence-transformers module list")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise UserError("modules.json is a list of {idx, name, path, type} objects, as SentenceTransformer.save "
                        "writes it", str(path))
    kinds = [_kind(m) for m in modules]
    unknown = [m.get("type") for m, kind in zip(modules, kinds) if kind not in ("Transformer", "Pooling", "Dense",
                                                                                  "Normalize")]
    if unknown:
        raise UserError(f"module {unknown[0]!r} is not one the builder serves (Transformer, Pooling, Dense, "
                        "Normalize)", str(path))
    order = "".join({"Transformer": "T", "Pooling": "P", "Dense": "D", "Normalize": "N"}[k] for k in kinds)
    if not re.fullmatch("TPD*N?", order):
        raise UserError(f"modules run {kinds}; the builder serves Transformer, Pooling, then Dense layers, then "
                        "an optional Normalize", str(path))
    if modules[0].get("path", "") != "":
        raise UserError("the Transformer module lives in a subfolder; save the model with the encoder at the "
                        "directory's root, as SentenceTransformer.save does", str(path))
    folders = [_module_folder(directory, m, path) for m in modules[1:]]
    pooling = _pooling(folders[0])
    dense = tuple(_dense(folder) for folder, kind in zip(folders[1:], kinds[2:]) if kind == "Dense")
    return SentenceEncoderLayout(pooling, dense, "N" in order, _max_seq_length(directory))


def _module_folder(directory: Path, module: dict, where: Path) -> Path:
    folder = str(module.get("path", ""))
    if not folder or Path(folder).name != folder or folder in (".", ".."):
        raise UserError(f"module {module.get('name')!r} names the folder {folder!r}; a module's folder is a "
                        "subfolder of the model directory", str(where))
    return directory / folder


def _pooling(folder: Path) -> str:
    config = read_json(folder / "config.json", "Pooling config")
    if not isinstance(config, dict):
        raise UserError("a Pooling config is a JSON object", str(folder / "config.json"))
    if "pooling_mode" in config:
        modes = [str(config["pooling_mode"])]
    else:
        modes = [mode for flag, mode in _POOLING_FLAGS.items() if config.get(flag)]
    if len(modes) != 1 or modes[0] not in SUPPORTED_POOLING:
        raise UserError(f"pools by {modes or 'nothing'}; the builder serves one of {SUPPORTED_POOLING}",
                        str(folder / "config.json"))
    return modes[0]


def _dense(folder: Path) -> DenseLayer:
    config = read_json(folder / "config.json", "Dense config")
    if not isinstance(config, dict):
        raise UserError("a Dense config is a JSON object", str(folder / "config.json"))
    activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
    if activation not in ACTIVATIONS:
        raise UserError(f"activation {activation!r} is not one the builder serves ({', '.join(ACTIVATIONS)})",
                        str(folder / "config.json"))
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError("a Dense module's weights are read from model.safetensors (a pytorch_model.bin is a pickle "
                        "the builder does not run): re-save the model with a current sentence-transformers",
                        str(folder))
    safetensors_shapes(weights)
    tensors = dict(safetensors_tensors(weights))
    weight, bias = tensors.get("linear.weight"), tensors.get("linear.bias")
    expected = (config.get("out_features"), config.get("in_features"))
    if weight is None or weight.ndim != 2 or tuple(weight.shape) != expected:
        raise UserError(f"linear.weight should be {list(expected)} as config.json says", str(weights))
    if config.get("bias", True) and (bias is None or bias.shape != (weight.shape[0],)):
        raise UserError(f"linear.bias should be [{weight.shape[0]}]", str(weights))
    return DenseLayer(weight.astype(np.float32), bias.astype(np.float32) if bias is not None else None,
                      ACTIVATIONS[activation])


def _max_seq_length(directory: Path) -> int | None:
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        if (directory / name).is_file():
            config = read_json(directory / name, "sentence-transformers config")
            value = config.get(key) if isinstance(config, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and 2 < value < 10**6:
                return value
    return None


# HF BertModel names -> PaddleNLP BertModel names (prefix match), and whether the tensor is a
# Linear weight, which torch keeps [out, in] and paddle [in, out].
_RENAMES = (
    ("embeddings.LayerNorm.", "embeddings.layer_norm."),
    ("attention.self.query.", "self_attn.q_proj."), ("attention.self.key.", "self_attn.k_proj."),
    ("attention.self.value.", "self_attn.v_proj."), ("attention.output.dense.", "self_attn.out_proj."),
    ("attention.output.LayerNorm.", "norm1."), ("intermediate.dense.", "linear1."),
    ("output.dense.", "linear2."), ("output.LayerNorm.", "norm2."),
)


def paddle_name(hf_name: str) -> tuple[str, bool]:
    """(PaddleNLP BertModel's name for an HF BertModel tensor, whether it is a Linear weight)."""
    name = hf_name.removeprefix("bert.").replace("encoder.layer.", "encoder.layers.")
    for old, new in _RENAMES:
        if old in name:
            name = name.replace(old, new)
            break
    linear = name.endswith(".weight") and any(part in name for part in ("_proj.", "linear1.", "linear2.",
                                                                         "pooler.dense."))
    return name, linear


def paddle_state(weights: Path) -> dict[str, np.ndarray]:
    """The encoder's tensors under PaddleNLP's names, Linear weights transposed."""
    state = {}
    for hf_name, array in safetensors_tensors(weights):
        if hf_name.endswith("position_ids"):  # a buffer older transformers saved, not a weight
            continue
        name, linear = paddle_name(hf_name)
        state[name] = np.ascontiguousarray(array.T if linear else array).astype(np.float32)
    return state


def paddle_config(config: dict, where: Path) -> dict:
    """PaddleNLP BertConfig arguments from an HF BERT config.json."""
    if config.get("model_type") != "bert":
        raise UserError(f"the encoder is model_type {config.get('model_type')!r}; the builder serves "
                        "sentence-transformers models on BERT (model_type bert)", str(where))
    if config.get("hidden_act", "gelu") not in ("gelu", "relu"):
        raise UserError(f"hidden_act {config.get('hidden_act')!r}: the builder serves BERT with gelu or relu",
                        str(where))
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "type_vocab_size", "pad_token_id", "layer_norm_eps")
    return {key: config[key] for key in keys if config.get(key) is not None}


def load_encoder(directory: Path, config: dict, weights: Path):
    """PaddleNLP's BertModel holding the directory's encoder weights (eval mode)."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertModel

    where = Path(directory) / "config.json"
    model = BertModel(BertConfig(**paddle_config(config, where), hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0))
    state = paddle_state(weights)
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    if missing == ["pooler.dense.bias", "pooler.dense.weight"]:  # saved without the pooler: unused here
        missing = []
        state.update({name: model.state_dict()[name].numpy() for name in ("pooler.dense.weight", "pooler.dense.bias")})
    wrong = [name for name in expected if name in state and tuple(state[name].shape) != expected[name]]
    if missing or wrong:
        raise UserError(f"the weights do not fit config.json's BERT: missing {missing[:4]}, other shapes "
                        f"{wrong[:4]}", str(weights))
    model.set_state_dict({name: paddle.to_tensor(state[name]) for name in expected})
    model.eval()
    return model


# PaddleNLP's semantic-search models (applications/neural_search, SemanticIndexBase): the encoder as
# `ptm`, its pooler output projected by `emb_reduce_linear` (where output_emb_size > 0), then
# F.normalize; the training scripts save `model.state_dict()` as model_state.pdparams.
SEMANTIC_SEARCH_ENCODER = "ptm."
SEMANTIC_SEARCH_PROJECTION = "emb_reduce_linear."


def semantic_search_layout(tensors) -> SentenceEncoderLayout | None:
    """The layout of a checkpoint whose (name, array) tensors are a semantic-search model's, else None."""
    projection, encoder = {}, False
    for name, array in tensors:
        encoder = encoder or name.startswith(SEMANTIC_SEARCH_ENCODER)
        if name.startswith(SEMANTIC_SEARCH_PROJECTION):
            projection[name[len(SEMANTIC_SEARCH_PROJECTION):]] = np.asarray(array, dtype=np.float32)
    if not encoder:
        return None
    dense = ()
    if projection:
        weight = projection.get("weight")  # paddle's Linear keeps [in, out]
        if weight is None or weight.ndim != 2:
            raise UserError("emb_reduce_linear.weight is missing or not a matrix")
        bias = projection.get("bias")
        dense = (DenseLayer(np.ascontiguousarray(weight.T), bias, ""),)
    return SentenceEncoderLayout("pooler", dense, True, None, SEMANTIC_SEARCH_ENCODER)
