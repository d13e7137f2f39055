"""The direct model's hold after a batch (serving_core.batch_hold): the policy and where it is written."""
from __future__ import annotations

import pytest
from google.protobuf.json_format import MessageToDict

from builder.triton.config import MODEL_HOLD_MS, BatchingOptions, IOTensor, parse, python_step, render
from serving_core.batch_hold import BatchHold
from serving_core.parameters import from_parameters, parameters_from_model_config

TEXT = IOTensor("TEXT", "string", (1,))
LABEL = IOTensor("label", "int64", (1,))


def test_a_lone_request_is_never_held():
    assert BatchHold(3.0).seconds(1, batch_seconds=10.0) == 0.0


def test_a_batch_is_held_for_hold_ms_at_most_its_share_of_the_batch_time():
    hold = BatchHold(3.0, max_share=0.05)
    assert hold.seconds(16, batch_seconds=0.090) == pytest.approx(0.003)  # ERNIE 3.0 Medium, batch 16
    assert hold.seconds(16, batch_seconds=0.002) == pytest.approx(0.0001)  # a tiny model: 5% of its batch


def test_off_holds_nothing():
    assert BatchHold(0.0).seconds(16, batch_seconds=1.0) == 0.0


@pytest.mark.parametrize("hold_ms, max_share", [(-1.0, 0.05), (3.0, 1.5), (3.0, -0.1)])
def test_bad_settings_are_refused(hold_ms, max_share):
    with pytest.raises(ValueError):
        BatchHold(hold_ms, max_share)


def _as_backend_reads(config) -> BatchHold:
    as_dict = MessageToDict(parse(render(config)), preserving_proto_field_name=True)
    return from_parameters(BatchHold, parameters_from_model_config(as_dict))


def test_the_hold_reaches_the_step_through_its_config_parameters():
    config = python_step("m", [TEXT], [LABEL], BatchingOptions(hold_ms=2.5))
    assert _as_backend_reads(config) == BatchHold(2.5)


def test_no_hold_writes_no_parameters_and_reads_back_off():
    config = python_step("t", [TEXT], [LABEL], BatchingOptions())
    assert "hold_ms" not in config.parameters
    assert _as_backend_reads(config).seconds(16, 1.0) == 0.0


def test_a_direct_build_holds_in_the_direct_model_only(example_model, tmp_path):
    from builder.build import build
    from builder.options import BuildOptions
    from serving_core.interface import Task

    options = BuildOptions(task=Task.SEQ_CLS, name="intent", direct=True)
    assert options.model_batching.hold_ms == MODEL_HOLD_MS > 0 and options.step_batching.hold_ms == 0
    build(example_model, tmp_path / "repo", options, show_progress=False)
    held = {path.parent.name: _as_backend_reads(parse(path.read_text(encoding="utf-8")))
            for path in (tmp_path / "repo").glob("*/config.pbtxt")}
    assert held == {"intent": BatchHold(), "intent_tokenizer": BatchHold(), "intent_model": BatchHold(),
                    "intent_postprocess": BatchHold(), "intent_direct": BatchHold(MODEL_HOLD_MS)}
