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
