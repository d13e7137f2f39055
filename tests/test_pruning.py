"""Width-pruned models (DynaBERT width_mult exports): shapes from the program, not config.json."""
from __future__ import annotations

import numpy as np
import pytest

from builder.build import build
from builder.example import intents
from builder.example.prune import prune_example
from builder.inspect_model import describe
from builder.options import BuildOptions
from builder.engine.quantize import QuantizeOptions
from builder.source.reference import reference_logits
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.source.detect import inspect_source
from builder.verify import verify
from serving_core.interface import Task
from serving_core.program import find_program
from serving_core.runtime import PaddleRunner, RuntimeKind
from serving_core.tokenization import ErnieTokenizer, settings_from_tokenizer_config

COMMANDS = [t for t, _, _ in intents.annotated_examples(6)][:16]
ROWS = {Task.SEQ_CLS: [(t,) for t in COMMANDS], Task.TOKEN_CLS: [(t,) for t in COMMANDS],
        Task.INTENT_SLOT: [(t,) for t in COMMANDS],
        Task.QA: [(q, c) for q, c, _, _ in intents.qa_examples(12, count=10, commands=4)]}


@pytest.fixture(scope="module")
def pruned(example_model, token_cls_model, qa_model, intent_slot_model, tmp_path_factory):
    sources = {Task.SEQ_CLS: example_model, Task.TOKEN_CLS: token_cls_model, Task.QA: qa_model,
               Task.INTENT_SLOT: intent_slot_model}
    root = tmp_path_factory.mktemp("pruned")
    return {task: prune_example(model, task, 0.5, root / f"{task.value}_width_mult_0.5")
            for task, model in sources.items()}


def test_full_width_prune_reproduces_the_model(example_model, tmp_path):
    export = prune_example(example_model, Task.SEQ_CLS, 1.0, tmp_path / "full")
    tokenizer = ErnieTokenizer.from_files(example_model / "vocab.txt",
                                          settings_from_tokenizer_config(example_model, 64))
    batch = tokenizer.encode(COMMANDS)
    served = PaddleRunner(find_program(export)).run({"input_ids": batch.input_ids,
                                                     "token_type_ids": batch.token_type_ids})
    expected = reference_logits(inspect_source(example_model), COMMANDS, None, 64)
    np.testing.assert_allclose(next(iter(served.values())), expected, atol=1e-4)


def test_inspect_sees_the_pruning_that_config_json_hides(pruned):
    info = describe(inspect_source(pruned[Task.SEQ_CLS]))
    assert info["config"]["num_attention_heads"] == 12 and info["config"]["intermediate_size"] == 1248
    weights = info["weights"]
    assert weights["pruned"] and weights["attention_heads"] == [6] and weights["ffn_widths"] == [624]


@pytest.mark.server
def test_pruned_and_pruned_int8_of_every_task_serve_and_verify(pruned, tmp_path):
    repo = tmp_path / "models"
    # Pruned without DynaBERT's retraining, these models make few confident decisions: the
    # INT8 gate and verify are held to the bars stated here.
    int8 = dict(runtime=RuntimeKind.ONNXRUNTIME, quantize="int8", quantize_options=QuantizeOptions(min_agreement=0.9))
    for task, model in pruned.items():
        build(model, repo, BuildOptions(task=task, name=f"{task.value}_pruned"), show_progress=False)
        build(model, repo, BuildOptions(task=task, name=f"{task.value}_pruned_int8", **int8), show_progress=False)
    with TritonServer(repo, ServerPorts.free()) as server:
        for task, rows in ROWS.items():
            exact = verify(repo, f"{task.value}_pruned", server.grpc_url, rows)
            assert exact.passed, exact.to_json()
            # Set on the fixed-step fixtures (the same model on any machine): pruned INT8 measured
            # agreement 1.0 on every task, largest probability difference 0.0040 (intent_slot, whose
            # answers match only if the intent and every slot span do); on an AVX2-only AMD EPYC, whose
            # INT8 kernels round differently, 0.9375 and 0.060. The bar leaves room for another CPU's
            # INT8 kernels: 10% of the answers (one or two) may flip, probabilities within 0.1.
            quantized = verify(repo, f"{task.value}_pruned_int8", server.grpc_url, rows, tolerance=0.1,
                               min_agreement=0.9)
            assert quantized.passed, quantized.to_json()
