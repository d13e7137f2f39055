"""The export cache the test suite (and anyone setting ERNIE_SERVING_EXPORT_CACHE) uses."""
from __future__ import annotations

import shutil

import pytest

from builder.source import export
from builder.source.detect import inspect_source
from serving_core.interface import Task


def test_one_export_per_checkpoint_content(example_model, tmp_path, monkeypatch):
    monkeypatch.setenv(export.EXPORT_CACHE_ENV, str(tmp_path / "cache"))
    first = export.export_once(inspect_source(example_model), Task.SEQ_CLS, tmp_path / "unused")
    assert first.params_file.is_file()

    def no_second_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(export, "export_checkpoint", no_second_export)
    assert export.export_once(inspect_source(example_model), Task.SEQ_CLS, tmp_path / "unused") == first
    changed = tmp_path / "changed"
    shutil.copytree(example_model, changed)
    (changed / "label.txt").write_text((changed / "label.txt").read_text() + "\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="exported again"):
        export.export_once(inspect_source(changed), Task.SEQ_CLS, tmp_path / "unused")
    with pytest.raises(AssertionError, match="exported again"):
        export.export_once(inspect_source(example_model), Task.SEQ_CLS, tmp_path / "unused", int_dtype="int32")


def test_one_onnx_conversion_per_program_content(example_model, tmp_path, monkeypatch):
    from builder.source import onnx_conversion

    monkeypatch.setenv(export.EXPORT_CACHE_ENV, str(tmp_path / "cache"))
    program = export.export_once(inspect_source(example_model), Task.SEQ_CLS, tmp_path / "unused")
    first = onnx_conversion.convert_to_onnx(program, tmp_path / "first.onnx")

    def no_second_conversion():
        raise AssertionError("converted again")

    monkeypatch.setattr(onnx_conversion, "_start", no_second_conversion)
    second = onnx_conversion.convert_to_onnx(program, tmp_path / "second.onnx")
    assert second.model_file.read_bytes() == first.model_file.read_bytes()
    with pytest.raises(AssertionError, match="converted again"):
        onnx_conversion.convert_to_onnx(program, tmp_path / "opset13.onnx", opset=13)
    with onnx_conversion.converter_ready():  # nothing started ahead where conversions are cached
        assert onnx_conversion._WARM == []
