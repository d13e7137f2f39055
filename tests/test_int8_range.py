"""INT8 weights in 7 bits for CPUs without VNNI or AMX (--quantize-reduce-range): decided per CPU,
reaching ONNX Runtime's quantizer, written down, and checked again where the model step loads."""
from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
from google.protobuf.json_format import MessageToDict
from onnx import numpy_helper

from builder.build import build
from builder.build_flags import add_build_flags, build_options
from builder.engine.quantize import QuantizeOptions
from builder.options import BuildOptions
from builder.triton.config import parse
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.model_step import ModelStepSettings, cpu_warning
from serving_core.parameters import from_parameters, parameters_from_model_config
from serving_core.runtime import RuntimeKind

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
VNNI = AVX2 | {"avx512f", "avx512_vnni"}


@pytest.mark.parametrize("flags, decided", [(AVX2, "on"), (VNNI, "off"), (AVX2 | {"avx_vnni"}, "off"),
                                            (frozenset(), "on")])
def test_auto_reduces_the_range_where_the_cpu_has_no_int8_dot_product(flags, decided):
    assert QuantizeOptions().resolved(flags).reduce_range == decided


@pytest.mark.parametrize("chosen", ["on", "off"])
def test_a_chosen_range_is_kept_on_any_cpu(chosen):
    for flags in (AVX2, VNNI):
        assert QuantizeOptions(reduce_range=chosen).resolved(flags).reduce_range == chosen


def test_an_unknown_range_is_refused_as_a_bad_option():
    with pytest.raises(ValueError, match="reduce_range"):
        QuantizeOptions(reduce_range="7")
    parser = argparse.ArgumentParser()
    add_build_flags(parser)
    args = parser.parse_args(["--task", "seq_cls", "--quantize", "int8"])
    args.quantize_reduce_range = "7"  # past argparse's choices, as a caller of build_options could
    with pytest.raises(UserError, match="bad option: reduce_range"):
        build_options(args)


def test_a_full_range_model_warns_on_a_cpu_without_vnni_only():
    full = ModelStepSettings(runtime="onnxruntime", int8_full_range=True)
    assert "rebuild it on this CPU" in cpu_warning(full, AVX2)
    assert cpu_warning(full, VNNI) is None
    assert cpu_warning(ModelStepSettings(runtime="onnxruntime"), AVX2) is None


def _int8_weights(repo, name) -> list[np.ndarray]:
    model = onnx.load(str(next((repo / f"{name}_model").rglob("*.onnx"))))
    return [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]


def _step_settings(repo, name) -> ModelStepSettings:
    config = MessageToDict(parse((repo / f"{name}_model" / "config.pbtxt").read_text()),
                           preserving_proto_field_name=True)
    return from_parameters(ModelStepSettings, parameters_from_model_config(config))


def test_the_range_reaches_the_weights_build_json_and_the_model_step(example_model, tmp_path):
    repo = tmp_path / "models"
    for chosen in ("on", "off"):
        options = BuildOptions(task=Task.SEQ_CLS, name=f"range_{chosen}", runtime=RuntimeKind.ONNXRUNTIME,
                               quantize="int8", quantize_options=QuantizeOptions(reduce_range=chosen))
        build(example_model, repo, options, show_progress=False)
    widest = {chosen: max(int(np.abs(w.astype(np.int32)).max()) for w in _int8_weights(repo, f"range_{chosen}"))
              for chosen in ("on", "off")}
    assert widest["on"] <= 64 < widest["off"], widest  # 7 bits: [-64, 63]
    # OpenVINO (NNCF's overflow fix): the setting this CPU's auto does not choose, which
    # test_compression.py's OpenVINO INT8 builds leave untried here
    untried = "off" if QuantizeOptions().reduces_range else "on"
    build(example_model, repo, BuildOptions(task=Task.SEQ_CLS, name="range_ov", runtime=RuntimeKind.OPENVINO,
                                            quantize="int8", quantize_options=QuantizeOptions(reduce_range=untried)),
          show_progress=False)
    for name, full in (("range_on", False), ("range_off", True), ("range_ov", untried == "off")):
        record = json.loads((repo / name / "build.json").read_text())
        assert record["reduce_range"] is (not full)
        assert _step_settings(repo, name).int8_full_range is full
