"""`builder inspect`: what the builder sees in a model directory.

Architecture comes from the program's weight shapes, not only from config.json, so a
DynaBERT width-pruned export (fewer heads and FFN units than its config says) shows up
as pruned, and an INT8 program as quantized.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from serving_core.tokenization import duplicated_tokens, read_vocab_lines
from serving_core.program import ProgramFiles, ProgramFormat, is_quantized, read_signature

from builder.source.detect import ModelSource, SourceKind, checkpoint_weights, weight_files
from builder.source.pickled_weights import check_pickle, is_pickle
from builder.source.mindspore import embedding_layout


def weight_shapes(files: ProgramFiles) -> list[tuple[int, ...]]:
    """Shapes of the program's parameters (PIR and ONNX; legacy programs and graphs of an unusual
    shape give none)."""
    try:
        return _weight_shapes(files)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError):
        return []


def _weight_shapes(files: ProgramFiles) -> list[tuple[int, ...]]:
    if files.format is ProgramFormat.PIR:
        data = json.loads(files.model_file.read_text(encoding="utf-8"))
        shapes = []
        for region in data["program"].get("regions", []):
            for block in region.get("blocks", []):
                for op in block.get("ops", []):
                    if op.get("#") == "p":
                        out = op["O"][0] if isinstance(op["O"], list) else op["O"]
                        shapes.append(tuple(out["TT"]["D"][1]))
        return shapes
    if files.format is ProgramFormat.ONNX:
        import onnx

        model = onnx.load(str(files.model_file), load_external_data=False)
        return [tuple(i.dims) for i in model.graph.initializer]
    return []


def architecture(shapes: list[tuple[int, ...]], config: dict) -> dict:
    """Layers, hidden size, FFN and attention widths as the weights have them."""
    matrices = [s for s in shapes if len(s) == 2]
    if not matrices:
        return {}
    hidden = config.get("hidden_size") or Counter(s[1] for s in matrices).most_common(1)[0][0]
    heads = config.get("num_attention_heads")
    ffn = sorted(s[1] for s in matrices if s[0] == hidden and s[1] > hidden)
    info = {"hidden_size": hidden, "layers": len(ffn), "ffn_widths": sorted(set(ffn))}
    if heads:
        head_dim = hidden // heads
        # q/k/v are [hidden, heads * head_dim]: narrower than hidden only when heads were pruned
        # (the pooler is [hidden, hidden] either way).
        narrow = {s[1] // head_dim for s in matrices if s[0] == hidden and s[1] < hidden and s[1] % head_dim == 0}
        info["attention_heads"] = sorted(narrow) or [heads]
    pruned_ffn = bool(config.get("intermediate_size")) and any(w < config["intermediate_size"] for w in ffn)
    pruned_heads = bool(heads) and any(h < heads for h in info.get("attention_heads", []))
    info["pruned"] = pruned_ffn or pruned_heads
    return info


def pickle_report(source: ModelSource) -> list[dict]:
    """Each pickle in the model directory (read with the allow-list, never run): the globals it
    names, whether it passes, and whether a build reads it."""
    weights = checkpoint_weights(Path(source.directory)) if source.kind is SourceKind.CHECKPOINT else None
    read = set(weight_files(weights)) if weights is not None else set()
    return [{**check_pickle(path).to_json(), "read_by_build": path in read}
            for path in sorted(Path(source.directory).iterdir()) if path.is_file() and is_pickle(path)]


def describe(source: ModelSource) -> dict:
    vocab_lines = read_vocab_lines(source.vocab_file)
    info = {"directory": str(source.directory), "format": source.kind.value,
            "labels": {k: list(v) for k, v in source.label_sets.items()}, "labels_origin": source.labels_origin,
            "vocab_file": str(source.vocab_file),
            "vocab_size": len(vocab_lines),
            # Tokens listed more than once: each is given the id of its last line, as PaddleNLP gives it.
            "vocab_duplicates": {token: ids for token, ids in list(duplicated_tokens(vocab_lines).items())[:20]},
            "size_mb": round(sum(p.stat().st_size for p in Path(source.directory).rglob("*") if p.is_file())
                             / 2**20, 2),
            "config": {k: source.config[k] for k in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                                     "intermediate_size", "max_position_embeddings")
                       if k in source.config}}
    info["pickles"] = pickle_report(source)
    if source.mindspore_files is not None:
        info["checkpoint"], info["run_config"] = map(str, source.mindspore_files)
        info["embedding_layout"] = embedding_layout(source.mindspore_files[0])
        info["config"] = {**info["config"], "num_labels": source.config["num_labels"],
                          "layer_norm_eps": source.config["layer_norm_eps"], "gelu": "tanh approximation"}
    if source.program is not None:
        signature = read_signature(source.program)
        info["program"] = str(source.program.model_file)
        info["inputs"] = [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in signature.inputs]
        info["outputs"] = [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in signature.outputs]
        info["quantized"] = is_quantized(source.program)
        info["weights"] = architecture(weight_shapes(source.program), source.config)
    return info
