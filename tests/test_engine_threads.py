"""How the engines use the cores they share with other model instances and steps."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from serving_core.program import ProgramFiles, ProgramFormat
from serving_core.runtime import OpenVinoRunner


def _tiny_onnx(path) -> ProgramFiles:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["ids_float"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["ids_float"], ["logits"], keepdims=1)],
        "tiny", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return ProgramFiles(ProgramFormat.ONNX, path, None)


def test_openvino_leaves_its_threads_unpinned(tmp_path):
    """OpenVINO pins its threads to cores by default. Two model instances of one thread each were
    then both pinned to the first core: an INT8 Medium direct model with `--instances 2 --threads 1`
    used 1.07 cores and served 298-347 texts/s at 16 clients, unpinned 1.5 cores and 495-519."""
    runner = OpenVinoRunner(_tiny_onnx(tmp_path / "tiny.onnx"), num_threads=1)
    assert runner._request.get_compiled_model().get_property("ENABLE_CPU_PINNING") is False
    out = runner.run({"input_ids": np.array([[1, 2, 3]], dtype=np.int64)})
    assert out["logits"].tolist() == [[6.0]]
