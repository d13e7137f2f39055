"""Shape buckets of the model step (serving_core.shape_buckets): few shapes reach the engine,
a build with --shape-buckets writes them, the step warms them at load, and padding changes no answer."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict

from builder.build import build
from builder.options import BuildOptions
from builder.triton.config import parse
from serving_core.interface import Task
from serving_core.model_step import ModelStepSettings, create_step_runner
from serving_core.parameters import from_parameters, parameters_from_model_config
from serving_core.program import ProgramSignature
from serving_core.runtime import RequestBatcher, RuntimeKind
from serving_core.shape_buckets import (WARM_UP_TOKENS, BucketedRunner, ShapeBuckets, bucket_rows,
                                         bucket_rows_within)
from serving_core.tensors import TensorSpec


def test_rows_go_up_to_the_next_of_powers_of_two_and_three_halves():
    assert [bucket_rows(n) for n in range(1, 18)] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24]
    assert all(n <= bucket_rows(n) < 1.5 * n for n in range(2, 2000))  # under a third of a bucket is padding
    assert [bucket_rows_within(n) for n in range(1, 14)] == [1, 2, 3, 4, 4, 6, 6, 8, 8, 8, 8, 12, 12]


def test_lengths_go_up_to_a_multiple_of_the_step_never_past_max_length():
    buckets = ShapeBuckets(16, 128, max_tokens=4096)
    assert buckets.shape(1, 7) == (1, 16)
    assert buckets.shape(5, 17) == (6, 32)
    assert buckets.shape(3, 120) == (3, 128)
    assert buckets.shape(2, 130) == (2, 130)  # longer than max_length: as it comes (the checks refuse it first)
    assert buckets.rows_per_call(48) == 64  # 4096 // 48 = 85 rows: calls of the largest bucket within it
    assert ShapeBuckets(16, 128).rows_per_call(48) == 0  # no budget: no bound
    with pytest.raises(ValueError, match="length_step"):
        ShapeBuckets(0, 128)


class _Recorder:
    """A runner that records the shapes it is given (a unit: no engine)."""

    signature = ProgramSignature((TensorSpec("input_ids", "int64", (-1, -1)),),
                                 (TensorSpec("logits", "float32", (-1, -1, 3)), TensorSpec("cls", "float32", (-1, 3))))

    def __init__(self):
        self.shapes = set()

    def run(self, feeds):
        ids = feeds["input_ids"]
        self.shapes.add(ids.shape)
        return {"logits": np.repeat(ids[:, :, None], 3, axis=2).astype(np.float32),
                "cls": np.repeat(ids[:, :1], 3, axis=1).astype(np.float32)}


def test_every_batch_a_client_can_send_reaches_the_engine_as_one_of_few_shapes():
    recorder = _Recorder()
    buckets = ShapeBuckets(16, 128, max_tokens=4096)
    runner = BucketedRunner(recorder, buckets, {"input_ids": 0})
    rng = np.random.default_rng(0)
    for width in range(1, 129):
        for rows in range(1, min(64, 4096 // width) + 1):  # the model step cuts batches to the budget first
            ids = rng.integers(1, 50, (rows, width))
            out = runner.run({"input_ids": ids})
            assert out["logits"].shape == (rows, width, 3)  # cut back: rows and the token axis
            assert np.array_equal(out["logits"][:, :, 0], ids) and np.array_equal(out["cls"][:, 0], ids[:, 0])
    assert recorder.shapes <= set(buckets.shapes(4096))  # 6000 shapes sent: only buckets within the budget
    assert len(recorder.shapes) < 100


@pytest.fixture(scope="module")
def repository(token_cls_model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("buckets") / "models"
    for name, buckets in (("ents_paddle", 16), ("ents_plain", 0)):
        build(token_cls_model, repo, BuildOptions(task=Task.TOKEN_CLS, name=name, runtime=RuntimeKind.PADDLE,
                                                  shape_buckets=buckets), show_progress=False)
    return repo


def _step_settings(repo, name) -> ModelStepSettings:
    config = MessageToDict(parse((repo / f"{name}_model" / "config.pbtxt").read_text()),
                           preserving_proto_field_name=True)
    return from_parameters(ModelStepSettings, parameters_from_model_config(config))


def test_a_build_with_buckets_writes_them_into_the_model_step_and_the_default_does_not(repository):
    bucketed, plain = _step_settings(repository, "ents_paddle"), _step_settings(repository, "ents_plain")
    assert (bucketed.bucket_length_step, bucketed.warm_up_tokens) == (16, WARM_UP_TOKENS)
    assert (plain.bucket_length_step, plain.warm_up_tokens) == (0, 0)


def _feeds(signature, rng, rows: int, width: int) -> dict[str, np.ndarray]:
    return {t.name: (rng.integers(1, 100, (rows, width)) if t.name == "input_ids" else np.zeros((rows, width)))
            .astype(t.dtype) for t in signature.inputs}


def test_padding_to_buckets_changes_no_answer_of_the_paddle_engine(repository):
    settings = replace(_step_settings(repository, "ents_paddle"), max_seq_len=64)  # as EnsembleSpec.model_step()
    directory = repository / "ents_paddle_model" / "1"
    logged = []
    bucketed = create_step_runner(settings, directory, log=logged.append)
    bare = create_step_runner(settings, directory, bucketed=False)
    assert isinstance(bucketed, BucketedRunner) and not isinstance(bare, BucketedRunner)
    assert logged and logged[0].startswith(f"warmed {len(bucketed.buckets.shapes(WARM_UP_TOKENS))} batch shapes")
    rng = np.random.default_rng(1)
    for rows, width in ((1, 7), (3, 13), (5, 29), (9, 40), (2, 64)):
        feeds = _feeds(bare.signature, rng, rows, width)
        expected, got = bare.run(feeds), bucketed.run(feeds)
        for name, value in expected.items():
            assert got[name].shape == value.shape, name
            np.testing.assert_allclose(got[name], value, atol=2e-5, rtol=1e-4, err_msg=f"{name} {rows}x{width}")
    # through the model step's batcher: requests of different lengths joined, padded, cut back per request
    batcher = RequestBatcher(bucketed, settings.pad_values, {o.name: 1 for o in bare.signature.outputs})
    requests = [_feeds(bare.signature, rng, 1, width) for width in (5, 11, 23)]
    for request, answer in zip(requests, batcher.run(requests)):
        for name, value in bare.run(request).items():
            np.testing.assert_allclose(answer[name], value, atol=2e-5, rtol=1e-4)


def test_the_bucket_benchmark_compares_steps_in_their_own_processes(repository):
    done = subprocess.run([sys.executable, "-m", "benchmarks.studies.shape_buckets", str(repository), "ents_plain",
                           "--steps", "0", "8", "--shapes", "12", "--max-rows", "5", "--lengths", "3", "30",
                           "--passes", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| off |") or line.startswith("| 8 |")]
    assert len(rows) == 2, done.stdout
    unbucketed, bucketed = (int(row.rstrip(" |").rsplit("|", 1)[1]) for row in rows)  # shapes the engine got
    assert bucketed < unbucketed <= 12
