"""Signatures read from exported programs; int32 vs int64 detected, not assumed."""
from __future__ import annotations

from pathlib import Path

import pytest

from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat, find_program, read_signature


def test_pir_export_int32(static_export):
    files = find_program(static_export)
    assert files.format is ProgramFormat.PIR
    signature = read_signature(files)
    assert [(t.name, t.dtype, t.shape) for t in signature.inputs] == [
        ("input_ids", "int32", (-1, -1)), ("token_type_ids", "int32", (-1, -1))]
    (output,) = signature.outputs
    assert output.dtype == "float32" and output.shape == (-1, 8)


def test_onnx_signature_keeps_paddle_names(static_export, tmp_path):
    from builder.source.onnx_conversion import convert_to_onnx

    onnx_files = convert_to_onnx(find_program(static_export), tmp_path / "m.onnx")
    signature = read_signature(onnx_files)
    assert [t.name for t in signature.inputs] == ["input_ids", "token_type_ids"]
    assert signature.inputs[0].dtype == "int32"
    assert signature.outputs[0].shape[-1] == 8


def test_garbage_program_names_the_file(tmp_path: Path):
    (tmp_path / "inference.json").write_text("{not json")
    (tmp_path / "inference.pdiparams").write_bytes(b"")
    with pytest.raises(UserError, match="inference.json"):
        read_signature(ProgramFiles(ProgramFormat.PIR, tmp_path / "inference.json", tmp_path / "inference.pdiparams"))


def test_json_that_is_not_a_program(tmp_path: Path):
    (tmp_path / "inference.json").write_text('{"hidden_size": 3}')
    with pytest.raises(UserError, match="not a Paddle PIR program"):
        read_signature(ProgramFiles(ProgramFormat.PIR, tmp_path / "inference.json", None))


def test_inspect_reads_architecture_from_weights():
    from builder.inspect_model import architecture

    config = {"hidden_size": 312, "num_attention_heads": 12, "intermediate_size": 1248}
    full = [(3000, 312)] + [(312, 312)] * 4 * 2 + [(312, 1248), (1248, 312)] * 2 + [(312, 8)]
    info = architecture(full, config)
    assert info["layers"] == 2 and info["ffn_widths"] == [1248] and info["attention_heads"] == [12]
    assert not info["pruned"]
    # DynaBERT width 1/2: 6 heads (q/k/v 156 wide) and 624 FFN units per layer.
    half = [(3000, 312)] + [(312, 156)] * 3 * 2 + [(156, 312)] * 2 + [(312, 624), (624, 312)] * 2 + [(312, 8)]
    info = architecture(half, config)
    assert info["pruned"] and info["ffn_widths"] == [624] and info["attention_heads"] == [6]


def test_inspect_cli_on_an_export(static_export, capsys):
    import json

    from builder.cli import main

    assert main(["inspect", str(static_export)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "static export" and info["quantized"] is False
    assert info["inputs"][0] == {"name": "input_ids", "dtype": "int32", "shape": [-1, -1]}
    assert info["weights"]["layers"] == 4
