"""INT8 (ONNX Runtime dynamic, OpenVINO static through NNCF), bf16 and INT8 Paddle programs: built,
checked, served, or refused clearly."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from builder.build import build
from builder.triton.repository import read_build
from builder.example import intents
from builder.options import BuildOptions
from builder.engine.quantize import QuantizeOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.verify import verify
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.model_step import step_program
from serving_core.program import ProgramFormat, find_program, is_quantized
from serving_core.runtime import RuntimeKind, cpu_has_bf16
from serving_core.spec import read_spec

INT8 = dict(runtime=RuntimeKind.ONNXRUNTIME, quantize="int8", quantize_options=QuantizeOptions())
OPENVINO_INT8 = dict(runtime=RuntimeKind.OPENVINO, quantize="int8", quantize_options=QuantizeOptions())
ENGINES = {"int8": INT8, "ov_int8": OPENVINO_INT8}
# Probability tolerance in serving, set on the fixed-step fixtures: ONNX Runtime's dynamic INT8 measured
# 0.0058 at most on the machine of the earlier runs and 0.038 (intent_slot) on an AVX2-only AMD EPYC,
# whose INT8 kernels differ (weights in 8 bits then: auto now keeps them in 7 there, not measured since);
# OpenVINO's static INT8 (activations quantized too) 0.0245 on seq_cls and
# 0.111 on intent_slot; every decision the same (the gate is the decisions; the probabilities move more).
TOLERANCE = {"int8": 0.05, "ov_int8": 0.15}
COMMANDS = [t for t, _, _ in intents.annotated_examples(5)][:20]
ROWS = {Task.SEQ_CLS: [(t,) for t in COMMANDS], Task.TOKEN_CLS: [(t,) for t in COMMANDS],
        Task.INTENT_SLOT: [(t,) for t in COMMANDS],
        Task.QA: [(q, c) for q, c, _, _ in intents.qa_examples(11, count=12, commands=4)]}


@pytest.fixture(scope="module")
def int8_repository(example_model, token_cls_model, qa_model, intent_slot_model, tmp_path_factory):
    repo = tmp_path_factory.mktemp("int8") / "models"
    models = {Task.SEQ_CLS: example_model, Task.TOKEN_CLS: token_cls_model, Task.QA: qa_model,
              Task.INTENT_SLOT: intent_slot_model}
    reports = {(task, engine): build(model, repo, BuildOptions(task=task, name=f"{task.value}_{engine}", **options),
                                     show_progress=False)
               for task, model in models.items() for engine, options in ENGINES.items()}
    return repo, reports


def test_int8_models_are_quantized_smaller_and_calibrated(int8_repository):
    repo, reports = int8_repository
    for (task, engine), report in reports.items():
        name = f"{task.value}_{engine}"
        settings = read_build(repo, name)[0].model
        files = step_program(settings, repo / f"{name}_model" / "1")
        assert is_quantized(files), name
        assert files.format is (ProgramFormat.ONNX if engine == "int8" else ProgramFormat.OPENVINO_IR)
        if engine == "int8":  # ONNX Runtime stores INT8 weights; NNCF's IR keeps FP32 ones for OpenVINO
            assert report.calibration["int8_mb"] < report.calibration["fp32_mb"] / 2
        assert report.calibration["confident_agreement"] >= INT8["quantize_options"].min_agreement
        manifest = json.loads((repo / name / "build.json").read_text())
        assert manifest["quantize"] == "int8" and manifest["calibration"] == report.calibration
        assert settings.runtime == ENGINES[engine]["runtime"].value


@pytest.mark.server
def test_int8_ensembles_serve_within_their_tolerance(int8_repository):
    repo, _ = int8_repository
    with TritonServer(repo, ServerPorts.free()) as server:
        for (task, rows), engine in itertools.product(ROWS.items(), ENGINES):
            # Set on the fixed-step fixture models (the same on any machine): measured agreement 1.0 on
            # every task, largest probability difference 0.0058 (intent_slot). The bar leaves room for
            # another CPU's INT8 kernels: 10% of the answers (one or two) may flip, probabilities within TOLERANCE.
            report = verify(repo, f"{task.value}_{engine}", server.grpc_url, rows, tolerance=TOLERANCE[engine],
                            min_agreement=0.9)
            assert report.passed, (engine, report.to_json())


def test_int8_below_the_agreement_bar_fails_and_writes_nothing(example_model, tmp_path):
    impossible = {**INT8, "quantize_options": QuantizeOptions(min_agreement=1.01)}
    with pytest.raises(UserError, match="keeps only .* of the confident FP32 decisions"):
        build(example_model, tmp_path / "repo", BuildOptions(task=Task.SEQ_CLS, **impossible), show_progress=False)
    assert not (tmp_path / "repo").exists()


def test_int8_on_a_full_disk_fails_clearly_and_writes_nothing(example_model, tmp_path, monkeypatch):
    """ONNX Runtime's quantizer writes its shape-inferred model unchecked; a full disk truncates it
    (simulated here: the write keeps half the bytes) and the build says so, not protobuf."""
    import onnx.shape_inference

    real = onnx.shape_inference.infer_shapes_path

    def truncated(model_path, output_path="", *args, **kwargs):
        real(model_path, output_path, *args, **kwargs)
        data = Path(output_path).read_bytes()
        Path(output_path).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path", truncated)
    with pytest.raises(UserError, match="could not read back a model it wrote in .* MB are free there"):
        build(example_model, tmp_path / "repo", BuildOptions(task=Task.SEQ_CLS, **INT8), show_progress=False)
    assert not (tmp_path / "repo").exists()


def test_int8_needs_onnxruntime_or_openvino_and_calibration_texts(example_model, tmp_path):
    with pytest.raises(UserError, match="add --runtime onnxruntime or --runtime openvino"):
        build(example_model, tmp_path / "r",
              BuildOptions(task=Task.SEQ_CLS, quantize="int8", runtime=RuntimeKind.PADDLE), show_progress=False)
    bare = tmp_path / "bare"
    shutil.copytree(example_model, bare)
    (bare / "dev.txt").unlink()
    (bare / "data.txt").unlink()
    with pytest.raises(UserError, match="--calibration-texts"):
        build(bare, tmp_path / "r", BuildOptions(task=Task.SEQ_CLS, **INT8), show_progress=False)


@pytest.mark.skipif(cpu_has_bf16(), reason="this CPU has bf16: the refusal cannot be shown here")
def test_bf16_is_refused_where_the_cpu_lacks_it(example_model, tmp_path):
    with pytest.raises(UserError, match="AMX or AVX512-BF16"):
        build(example_model, tmp_path / "r",
              BuildOptions(task=Task.SEQ_CLS, precision="bf16", runtime=RuntimeKind.PADDLE), show_progress=False)


def test_bf16_reaches_the_model_step_of_both_targets(example_model, tmp_path, monkeypatch):
    """Drift bug: `--precision bf16 --target paddle-serving` used to serve FP32 silently."""
    if not cpu_has_bf16():  # the spec and both renderings can be checked on any CPU
        monkeypatch.setattr("builder.build.cpu_has_bf16", lambda: True)
    report = build(example_model, tmp_path / "r", BuildOptions(task=Task.SEQ_CLS, precision="bf16", target="all",
                                                                   runtime=RuntimeKind.PADDLE),
                   show_progress=False)
    triton = tmp_path / "r" / "triton"
    assert '"bf16"' in (triton / f"{report.ensemble}_model" / "config.pbtxt").read_text()
    service = tmp_path / "r" / "paddle_serving" / report.ensemble
    spec = read_spec(service / "service.json")
    assert spec.model_step().precision == "bf16" and read_build(triton, report.ensemble)[0] == spec
    if cpu_has_bf16():  # the runner the Paddle Serving op gets is bf16
        monkeypatch.syspath_prepend(str(service))
        from serving_adapter import RunnerServiceHandler

        handler = RunnerServiceHandler(service, spec.model_step(), [t.name for t in spec.program_outputs])
        assert handler.get_client().runner.precision == "bf16"


def test_int8_paddle_program_that_cannot_run_points_to_onnxruntime(static_export, tmp_path):
    """A program with quantize/dequantize ops that Paddle Inference cannot run here is refused."""
    model = tmp_path / "quantized"
    shutil.copytree(static_export, model)
    program = model / "inference.json"
    text = program.read_text()
    program.write_text(text.replace('"1.matmul"', '"1.dequantize_linear"', 1))
    assert is_quantized(find_program(model))
    with pytest.raises(UserError, match="--runtime onnxruntime --quantize int8"):
        build(model, tmp_path / "r", BuildOptions(task=Task.SEQ_CLS), show_progress=False)
