"""The native onnxruntime GPU model step: schema, wiring and the padded tokenizer, without a GPU."""
from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc

from builder.build import build
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.triton.config import parse
from clients.triton import bytes_input
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

GPU = dict(runtime=RuntimeKind.ONNXRUNTIME, gpu_onnxruntime=True, gpu_tensorrt=True, gpu_fp16=True, max_seq_len=32)


@pytest.fixture(scope="module")
def gpu_repository(example_model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("gpu") / "models"
    build(example_model, repo, BuildOptions(task=Task.SEQ_CLS, name="intent", **GPU), show_progress=False)
    return repo


def test_native_step_config(gpu_repository):
    config = parse((gpu_repository / "intent_model" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and not config.backend
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert not any(i.allow_ragged_batch for i in config.input)
    assert (gpu_repository / "intent_model" / "1" / "model.onnx").is_file()
    assert not (gpu_repository / "intent_model" / "1" / "model.py").exists()


@pytest.mark.server
def test_tokenizer_pads_every_row_to_max_seq_len(gpu_repository):
    with TritonServer(gpu_repository, ServerPorts.free(), load_models=("intent_tokenizer",)) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        result = client.infer("intent_tokenizer", [bytes_input("TEXT", ["打开空调", "导航到北京西站" * 10])])
        assert result.as_numpy("input_ids").shape == (2, 32)
        assert result.as_numpy("text_truncated").ravel().tolist() == [False, True]


def test_native_step_is_refused_where_it_cannot_work(example_model, token_cls_model, tmp_path):
    with pytest.raises(UserError, match="available for seq_cls"):
        build(token_cls_model, tmp_path / "r", BuildOptions(task=Task.TOKEN_CLS, **GPU), show_progress=False)
    with pytest.raises(UserError, match="--runtime onnxruntime"):
        build(example_model, tmp_path / "r", BuildOptions(task=Task.SEQ_CLS, gpu_onnxruntime=True,
                                                          runtime=RuntimeKind.PADDLE), show_progress=False)
    with pytest.raises(UserError, match="--target triton"):
        build(example_model, tmp_path / "r", BuildOptions(task=Task.SEQ_CLS, target="all", **GPU),
              show_progress=False)
