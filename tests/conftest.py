"""Shared fixtures: small offline ERNIE models, built repositories and a real tritonserver."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")


@pytest.fixture(scope="session", autouse=True)
def _quiet(tmp_path_factory):
    from builder.source.export import EXPORT_CACHE_ENV
    from builder.quiet import quiet_frameworks

    quiet_frameworks(import_paddlenlp=False)  # the unit tier never imports paddlenlp
    # Each example checkpoint is exported once per run, however many builds use it (builds in
    # subprocesses too); tests of the export itself use their own checkpoints.
    os.environ.setdefault(EXPORT_CACHE_ENV, str(tmp_path_factory.mktemp("exports")))


@pytest.fixture(scope="session")
def example_model(tmp_path_factory) -> Path:
    """The seq_cls example checkpoint, trained for a fixed number of steps (offline, fixed seeds).

    Step counts below are fixed, never time budgets, so fixture quality does not depend on the
    machine's load; the tests' tolerances are set on these models."""
    from builder.example.seq_cls_example import ExampleSpec, make_seq_cls_example

    directory = tmp_path_factory.mktemp("models") / "intent"
    make_seq_cls_example(directory, ExampleSpec(train_steps=24), show_progress=False)
    return directory


@pytest.fixture(scope="session")
def static_export(example_model, tmp_path_factory) -> Path:
    """The example exported the way PaddleNLP's export_model.py does, tokenizer files beside it."""
    from builder.source.export import export_checkpoint
    from builder.source.detect import inspect_source
    from serving_core.interface import Task

    directory = tmp_path_factory.mktemp("models") / "intent_static"
    export_checkpoint(inspect_source(example_model), Task.SEQ_CLS, directory, int_dtype="int32")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "label.txt"):
        shutil.copy2(example_model / name, directory / name)
    return directory


def _example(tmp_path_factory, task_value: str, steps: int) -> Path:
    from dataclasses import replace

    from builder.example import ExampleSpec, make_example
    from serving_core.interface import Task

    directory = tmp_path_factory.mktemp("models") / task_value
    make_example(Task(task_value), directory, replace(ExampleSpec(), train_steps=steps), show_progress=False)
    return directory


@pytest.fixture(scope="session")
def token_cls_model(tmp_path_factory) -> Path:
    return _example(tmp_path_factory, "token_cls", 24)


@pytest.fixture(scope="session")
def qa_model(tmp_path_factory) -> Path:
    return _example(tmp_path_factory, "qa", 10)


@pytest.fixture(scope="session")
def intent_slot_model(tmp_path_factory) -> Path:
    return _example(tmp_path_factory, "intent_slot", 24)


@pytest.fixture(scope="module")
def server(built):
    """A tritonserver over the module's `built` fixture's triton/ repository, shared by its tests."""
    from builder.serving.triton_server import ServerPorts, TritonServer

    with TritonServer(built / "triton", ServerPorts.free()) as running:
        yield running


MODEL_FIXTURES = {"example_model", "static_export", "token_cls_model", "qa_model", "intent_slot_model"}


def pytest_collection_modifyitems(items):
    """Tests that need a trained example model (PaddleNLP, seconds of training) are marked
    `models`: `-m "not server and not models"` is the unit tier."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)
