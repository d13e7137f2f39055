"""What an update costs on Paddle Serving (docs/publish.md): its pipeline loads one model at start
and has no API to load another, so a new version is a restart on the new build's service, and the
requests sent while it restarts fail."""
from __future__ import annotations

import json

import pytest

from .test_paddle_serving import _cli

from builder.build import build
from builder.example.seq_cls_example import ExampleSpec, make_seq_cls_example
from builder.options import BuildOptions
from builder.paddle_serving.server import PipelineService
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

pytestmark = pytest.mark.server

TEXTS = ["打开空调", "播放周杰伦的花心"]


def test_a_paddle_serving_update_is_a_restart_and_requests_meanwhile_fail(example_model, tmp_path):
    retrained = tmp_path / "retrained"
    make_seq_cls_example(retrained, ExampleSpec(train_steps=8), show_progress=False)
    services = {}
    for key, model in (("v1", example_model), ("v2", retrained)):
        build(model, tmp_path / key, BuildOptions(task=Task.SEQ_CLS, name="intent", target="paddle-serving",
                                                  runtime=RuntimeKind.ONNXRUNTIME), show_progress=False)
        services[key] = tmp_path / key / "intent"
    with PipelineService(services["v1"]) as first:
        url, ports = first.url, (first.rpc_port, first.http_port)
        before = _cli(Task.SEQ_CLS, url, TEXTS)
    meanwhile = _cli(Task.SEQ_CLS, url, TEXTS)  # nothing listens while the service restarts
    with PipelineService(services["v2"], *ports) as second:
        after = _cli(Task.SEQ_CLS, second.url, TEXTS)
    assert before.returncode == 0 and after.returncode == 0, (before.stderr, after.stderr)
    assert meanwhile.returncode != 0
    answers = [[json.loads(line) for line in done.stdout.splitlines()] for done in (before, after)]
    assert len(answers[0]) == len(answers[1]) == len(TEXTS) and answers[0] != answers[1]
