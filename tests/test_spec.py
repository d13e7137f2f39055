"""The build spec: typed, checked, stored once, read back the same; and verify's tie-aware comparisons."""
from __future__ import annotations

import json

import numpy as np
import pytest

from builder.source.reference import ReferenceSpans, seqeval_entities
from builder.triton.config import render
from builder.triton.target import TritonOptions, client_parameters, repository_plan
from builder.verify import same_decisions, same_labels
from serving_core import interface
from serving_core.model_step import ModelStepSettings
from serving_core.program import ProgramFiles, ProgramFormat
from serving_core.qa import QASettings
from serving_core.seq_cls import SeqClsSettings
from serving_core.spec import EnsembleSpec, IOTensor
from serving_core.token_cls import Entity, TokenClsSettings, decode_entities
from serving_core.tokenization import TokenizerSettings
from serving_core.windows import WindowSettings


def _spec(**changes) -> EnsembleSpec:
    values = dict(
        name="news", task="seq_cls", inputs=(IOTensor(interface.TEXT, "string", (1,)),),
        tokenizer=TokenizerSettings(max_seq_len=64), window=WindowSettings(),
        feeds=(IOTensor("input_ids", "int64", (-1,)),), tokenizer_extras=(IOTensor(interface.TRUNCATED, "bool", (1,)),),
        model=ModelStepSettings(value_limits={"input_ids": 100}),
        program_outputs=(IOTensor("fetch_name_0", "float32", (3,)),), roles={"fetch_name_0": interface.LOGITS},
        post_inputs=(IOTensor(interface.LOGITS, "float32", (3,)),),
        post_outputs=(IOTensor(interface.LABEL, "int64", ()),), postprocess=SeqClsSettings(("a", "b", "c")))
    values.update(changes)
    return EnsembleSpec(**values)


def test_spec_round_trips_through_json():
    spec = _spec()
    assert EnsembleSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_model_step_limits_are_derived_from_the_tokenizer_not_stored():
    spec = _spec(window=WindowSettings(mode="windows", max_windows=4))
    assert (spec.model_step().max_seq_len, spec.model_step().max_windows) == (64, 4)
    assert json.dumps(spec.to_json()).count('"max_seq_len"') == 1
    with pytest.raises(ValueError, match="limits come from the tokenizer"):
        _spec(model=ModelStepSettings(max_seq_len=64))


@pytest.mark.parametrize("changes, message", [
    ({"postprocess": QASettings()}, "seq_cls takes SeqClsSettings"),
    ({"roles": {"other": interface.LOGITS}}, "do not name the program outputs"),
    ({"version": 99}, "version 99"),
])
def test_inconsistent_specs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        _spec(**changes)


def test_unknown_dtypes_and_fields_are_refused():
    with pytest.raises(ValueError, match="dtype"):
        IOTensor("x", "TYPE_FP32", (1,))
    data = _spec().to_json()
    data["tokenizer"]["lowercase"] = True
    with pytest.raises(ValueError, match="lowercase"):
        EnsembleSpec.from_json(data)


def test_triton_rendering_carries_the_spec(tmp_path):
    spec = _spec()
    program = ProgramFiles(ProgramFormat.PIR, tmp_path / "inference.json", tmp_path / "inference.pdiparams")
    plan = repository_plan(spec, TritonOptions(), tmp_path / "vocab.txt", program)
    configs = plan.configs()
    assert list(configs) == ["news", *spec.step_names]
    model_step = render(configs["news_model"])
    assert '"max_seq_len"' in model_step and 'string_value: "64"' in model_step
    assert client_parameters(spec, 64)[interface.PARAM_LABELS] == '["a", "b", "c"]'
    assert client_parameters(spec, 64)[interface.PARAM_MAX_BATCH_SIZE] == "64"
    ensemble = configs["news"]
    assert ensemble.max_batch_size == 0 and [list(o.dims) for o in ensemble.output] == [[-1]]
    assert list(ensemble.input[0].dims) == [-1, 1] and configs["news_postprocess"].max_batch_size == 0


def test_near_ties_count_as_agreement_and_real_differences_do_not():
    expected = np.array([[0.5, 0.49995, 0.00005], [0.7, 0.2, 0.1]])
    assert same_labels(np.array([1, 0]), expected, 1e-4).tolist() == [True, True]
    assert same_labels(np.array([1, 1]), expected, 1e-4).tolist() == [True, False]
    served = np.array([[0.50002, 0.9], [0.2, 0.9]])
    source = np.array([[0.49999, 0.9], [0.6, 0.9]])
    assert same_decisions(served, source, 0.5, 1e-4).tolist() == [True, False]


def test_entity_differences_are_forgiven_only_on_tied_tokens():
    offsets = np.array([[0, 1], [1, 2], [2, 3]])
    spans = ReferenceSpans([], offsets, np.array([0.5, 0.00001, 0.5]))
    assert spans.tied_within(1, 2, 1e-4) and spans.tied_within(0, 3, 1e-4)
    assert not spans.tied_within(0, 1, 1e-4) and not spans.tied_within(2, 3, 1e-4)


@pytest.mark.parametrize("tags", [["B-PER", "I-PER", "O", "B-LOC"], ["I-PER", "I-LOC", "O", "I-LOC"],
                                  ["B-PER", "B-PER", "I-PER", "O"], ["O", "O", "O", "O"]])
def test_seqeval_decoding_matches_the_serving_decoder_on_bio(tags):
    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    probabilities = np.eye(len(labels))[[labels.index(t) for t in tags]] * 0.9 + 0.02
    offsets = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    ours = decode_entities("abcd", probabilities, offsets, TokenClsSettings(labels))
    theirs = seqeval_entities("abcd", probabilities, offsets, labels)
    assert ours == theirs
    assert all(isinstance(e, Entity) for e in theirs)
