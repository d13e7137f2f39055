"""Config generation through model_config.proto, the wiring check and typed parameters."""
from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from builder.triton.config import BatchingOptions, EnsembleStep, IOTensor, ensemble, parse, python_step, render
from builder.triton.wiring import check_wiring, wiring_problems
from serving_core.errors import BuildBug, UserError
from serving_core.model_step import ModelStepSettings
from serving_core.parameters import from_parameters, parameters_from_model_config, to_parameters
from serving_core.seq_cls import SeqClsSettings
from serving_core.tokenization import TokenizerSettings

TEXT = IOTensor("TEXT", "string", (1,))
IDS = IOTensor("input_ids", "int64", (-1,))
LOGITS = IOTensor("logits", "float32", (3,))
LABEL = IOTensor("label", "int64", (1,))


def _pipeline(ids_type="int64", output_map=None):
    tok = python_step("t", [TEXT], [IDS], BatchingOptions())
    model = python_step("m", [IOTensor("input_ids", ids_type, (-1,), ragged=True)], [LOGITS], BatchingOptions())
    post = python_step("p", [LOGITS], [LABEL], BatchingOptions())
    steps = [EnsembleStep("t", {"TEXT": "TEXT"}, {"input_ids": "ids"}),
             EnsembleStep("m", {"input_ids": "ids"}, {"logits": "logits"}),
             EnsembleStep("p", {"logits": "logits"}, output_map or {"label": "label"})]
    ens = ensemble("e", [TEXT], [LABEL], steps, 64, {"task": "seq_cls"})
    return ens, {"t": tok, "m": model, "p": post}


def test_config_renders_and_parses_back():
    config = python_step("m", [IOTensor("input_ids", "int64", (-1,), ragged=True)], [LOGITS],
                         BatchingOptions(32, 2, 500, (8, 16)), ModelStepSettings(num_threads=4))
    text = render(config)
    again = parse(text)
    assert again == config
    assert again.backend == "python" and again.max_batch_size == 32
    assert again.input[0].allow_ragged_batch
    assert list(again.dynamic_batching.preferred_batch_size) == [8, 16]
    assert again.instance_group[0].count == 2 and again.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def test_unknown_field_is_rejected_by_the_schema():
    from google.protobuf.text_format import ParseError

    with pytest.raises(ParseError, match="no_such_field"):
        parse('name: "x" no_such_field: 1')


def test_good_wiring_passes():
    ens, models = _pipeline()
    assert wiring_problems(ens, models) == []
    check_wiring(ens, models)


def test_dtype_mismatch_is_caught():
    ens, models = _pipeline(ids_type="int32")
    problems = wiring_problems(ens, models)
    assert any("TYPE_INT64" in p and "TYPE_INT32" in p for p in problems), problems
    with pytest.raises(BuildBug):  # the builder's own mistake, never the user's (exit 5)
        check_wiring(ens, models)


def test_unproduced_output_and_unknown_model_output_are_caught():
    ens, models = _pipeline(output_map={"nope": "label2"})
    problems = "\n".join(wiring_problems(ens, models))
    assert "no output 'nope'" in problems and "'label' is produced by no step" in problems


def test_missing_model_is_caught():
    ens, models = _pipeline()
    del models["m"]
    assert any("no model named 'm'" in p for p in wiring_problems(ens, models))


@pytest.mark.parametrize("settings", [
    TokenizerSettings(do_lower_case=False, max_seq_len=64),
    ModelStepSettings(runtime="onnxruntime", num_threads=3, pad_values={"input_ids": 0}),
    SeqClsSettings(("体育", "财经", "a,b"), multi_label=True, threshold=0.3),
])
def test_parameters_round_trip_through_the_config(settings):
    config = python_step("x", [TEXT], [LABEL], BatchingOptions(), settings)
    from google.protobuf.json_format import MessageToDict

    as_backend_sees_it = MessageToDict(parse(render(config)), preserving_proto_field_name=True)
    assert from_parameters(type(settings), parameters_from_model_config(as_backend_sees_it)) == settings


def test_string_parameters_are_stored_plain():
    assert to_parameters(ModelStepSettings(model_file="inference.json"))["model_file"] == "inference.json"


def test_build_flags_default_to_the_build_options_defaults():
    """Flags are mapped to BuildOptions in one declared place (builder/build_flags.py): with none
    given the options are BuildOptions' own defaults; given ones land in their (nested) fields."""
    from pathlib import Path

    from builder.build_flags import build_options
    from builder.cli import make_parser
    from builder.options import BuildOptions
    from serving_core.interface import Task
    from serving_core.runtime import RuntimeKind

    def parsed(*flags):
        return build_options(make_parser().parse_args(["build", "--model", "m", "--output", "o", *flags]))

    assert parsed("--task", "seq_cls") == BuildOptions(task=Task.SEQ_CLS)
    options = parsed("--task", "qa", "--runtime", "onnxruntime", "--quantize", "int8", "--quantize-per-channel",
                     "--calibration-texts", "c.txt", "--max-batch-size", "8", "--instances", "2", "--int32",
                     "--pipeline-batch-size", "4", "--stride", "16")
    assert options.runtime is RuntimeKind.ONNXRUNTIME and options.quantize == "int8"
    assert options.quantize_options.per_channel and options.quantize_options.calibration_file == Path("c.txt")
    assert (options.model_batching.max_batch_size, options.model_batching.instances) == (8, 2)
    assert options.step_batching.max_batch_size == 8 and options.step_batching.instances == 1
    assert options.int_dtype == "int32" and options.pipeline.batch_size == 4 and options.stride == 16
    assert parsed("--task", "seq_cls", "--batch-hold-ms", "0").model_batching.hold_ms == 0
    with pytest.raises(UserError, match="bad option: hold_ms must be >= 0"):  # exit 2 with that line, no traceback
        parsed("--task", "seq_cls", "--batch-hold-ms", "-1")
