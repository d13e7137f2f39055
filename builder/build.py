"""`builder build`: model directory -> Triton model repository."""
from __future__ import annotations

import datetime
import logging
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from serving_core.errors import UserError
from serving_core.program import ProgramFormat, ProgramSignature, is_quantized, read_signature
from serving_core.tensors import TensorSpec
from serving_core.runtime import PaddleRunner, RuntimeKind, cpu_has_bf16
from serving_core.tokenization import (DEFAULT_MAX_SEQ_LEN, ErnieTokenizer, read_vocab,
                                       settings_from_tokenizer_config)

from .export import convert_to_onnx, export_once
from .quantize import calibration_rows, check_int8, quantize_dynamic_int8
from .options import BuildOptions
from .repository import write_repository
from .wiring import check_wiring
from .plans import PLANNERS, PlanInputs
from .triton_target import repository_plan
from .sources import ModelSource, check_task, inspect_source

log = logging.getLogger("builder")


@dataclass(frozen=True)
class BuildReport:
    ensemble: str
    output: Path
    models: tuple[str, ...]
    source_kind: str
    labels: tuple[str, ...]
    max_seq_len: int
    runtime: str
    seconds: float
    calibration: dict | None = None  # INT8 builds: agreement with FP32 on the calibration texts


def ensemble_name_for(directory: Path) -> str:
    """A Triton-safe model name from a directory name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", directory.resolve().name).strip("._-")
    return name or "ernie"


def resolve_max_seq_len(source: ModelSource, requested: int | None) -> int:
    limit = int(source.config.get("max_position_embeddings", 0)) or None
    if requested is None:
        return min(DEFAULT_MAX_SEQ_LEN, limit) if limit else DEFAULT_MAX_SEQ_LEN
    if requested < 3:
        raise UserError(f"--max-seq-len {requested} leaves no room for text ([CLS] and [SEP] take 2)")
    if limit and requested > limit:
        raise UserError(f"--max-seq-len {requested} exceeds the model's max_position_embeddings {limit}",
                        str(source.directory))
    return requested


def build(model_dir: Path, output: Path, options: BuildOptions, show_progress: bool = True) -> BuildReport:
    started = time.perf_counter()
    stages = tqdm(total=5, desc="build", unit="step", disable=not show_progress, leave=False)

    def stage(text: str) -> None:
        stages.set_postfix_str(text)
        log.info(text)

    stage("reading model directory")
    source = inspect_source(model_dir, options.tokenizer_dir, options.labels_file, options.slot_labels_file,
                            options.program_file)
    check_task(source, options.task.value)
    name = options.name or ensemble_name_for(source.directory)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
    max_seq_len = resolve_max_seq_len(source, options.max_seq_len)
    tokenizer_settings = settings_from_tokenizer_config(source.tokenizer_dir, max_seq_len)
    vocab = read_vocab(source.vocab_file)
    tokenizer = ErnieTokenizer(vocab, tokenizer_settings, str(source.vocab_file))
    vocab_size = max(vocab.values()) + 1
    if source.config.get("vocab_size"):
        vocab_size = min(vocab_size, int(source.config["vocab_size"]))
    log.info("%s: %s, labels from %s (%s), max_seq_len %d", source.directory, source.kind.value,
             source.labels_origin, ", ".join(f"{k}: {len(v)}" for k, v in source.label_sets.items()) or "none",
             max_seq_len)
    stages.update()

    with tempfile.TemporaryDirectory(prefix="ernie-build-") as work:
        work = Path(work)
        stage("exporting static program" if source.program is None else "reading static program")
        program = source.program or export_once(source, options.task, work / "program", options.int_dtype)
        signature = read_signature(program)
        log.info("program %s: inputs %s, outputs %s", program.model_file.name,
                 [(t.name, t.dtype) for t in signature.inputs], [(t.name, list(t.shape)) for t in signature.outputs])
        stages.update()

        stage(f"preparing {options.runtime} model")
        check_runtime_options(options, program)
        prove_weights(program, tokenizer)
        serving_program = program
        if options.runtime is RuntimeKind.ONNXRUNTIME:
            serving_program = convert_to_onnx(program, work / "model.onnx")
            signature = runtime_signature(signature, read_signature(serving_program), program)
            check_conversion(program, serving_program, tokenizer)
        if options.quantize == "int8":
            serving_program = quantize_dynamic_int8(serving_program, work / "model.int8.onnx",
                                                    options.quantize_options)
        stages.update()

        stage("planning ensemble")
        spec = PLANNERS[options.task](PlanInputs(name, options, program, serving_program, signature,
                                                 tokenizer_settings, source.label_sets, tokenizer.pad_id,
                                                 vocab_size, source.config.get("type_vocab_size"),
                                                 source.program.model_file if source.program else source.directory))
        plan = repository_plan(spec, options.triton(), source.vocab_file, serving_program)
        check_wiring(plan.ensemble(), plan.configs())  # before either target is written
        stages.update()

        calibration = None
        if options.quantize == "int8":
            stage("checking INT8 against FP32")
            calibration = calibrate(spec, program, serving_program, tokenizer, source, options).to_json()
        stage("writing repository")
        record = {
            "spec": spec.to_json(), "source": str(source.directory.resolve()), "source_kind": source.kind.name,
            "inputs": {"tokenizer_dir": str(source.tokenizer_dir.resolve())  # None: beside the model
                       if source.tokenizer_dir.resolve() != source.directory.resolve() else None,
                       "labels_file": str(Path(options.labels_file).resolve()) if options.labels_file else None,
                       "slot_labels_file": str(Path(options.slot_labels_file).resolve())
                       if options.slot_labels_file else None,
                       "program_file": source.program.model_file.name if source.program else None},
            "labels_origin": source.labels_origin, "label_sets": {k: list(v) for k, v in source.label_sets.items()},
            "program_inputs": [asdict(t) for t in signature.inputs],
            "program_outputs": [asdict(t) for t in signature.outputs],
            "quantize": options.quantize, "calibration": calibration,
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        # Paddle Serving first: its writer has the step more likely to fail (the prototxt
        # child process); the Triton swap that follows is renames only.
        if options.target in ("paddle-serving", "all"):
            from .paddle_serving import write_paddle_serving

            service_root = Path(output) / "paddle_serving" if options.target == "all" else Path(output)
            write_paddle_serving(spec, serving_program, signature, source.vocab_file, service_root / name,
                                 options.pipeline, options.overwrite)
        if options.target in ("triton", "all"):
            write_repository(plan, Path(output) / "triton" if options.target == "all" else output, record,
                             options.overwrite)
        stages.update()
    stages.close()
    seconds = time.perf_counter() - started
    return BuildReport(name, Path(output), tuple(m.name for m in plan.models), source.kind.value,
                       spec_labels(spec), max_seq_len, options.runtime.value, seconds, calibration)


def runtime_signature(source: ProgramSignature, served: ProgramSignature, program) -> ProgramSignature:
    """The served program's names and dtypes, as its runtime exposes them (paddle2onnx renames a
    legacy program's `save_infer_model/scale_*` outputs), with the source's fixed dims where the
    served program leaves them open."""
    if len(source.inputs) != len(served.inputs) or len(source.outputs) != len(served.outputs):
        raise UserError("the ONNX conversion changed the number of inputs or outputs", str(program.model_file))
    by_name = {t.name: t for t in served.inputs}
    if set(by_name) == {t.name for t in source.inputs}:  # same inputs, perhaps reordered: keep the program's order
        served = ProgramSignature(tuple(by_name[t.name] for t in source.inputs), served.outputs)

    def merged(a: TensorSpec, b: TensorSpec) -> TensorSpec:
        shape = tuple(y if y > 0 else x for x, y in zip(a.shape, b.shape)) if len(a.shape) == len(b.shape) \
            else b.shape
        return TensorSpec(b.name, b.dtype, shape)

    return ProgramSignature(tuple(merged(a, b) for a, b in zip(source.inputs, served.inputs)),
                            tuple(merged(a, b) for a, b in zip(source.outputs, served.outputs)))


PROBE_TEXTS = ["打开空调", "play love story", "导航到北京西站然后播放音乐"]


def _probe_outputs(runner, tokenizer) -> list:
    """The runner's outputs, in order, on PROBE_TEXTS tokenized as the tokenizer step does."""
    from serving_core.tokenization import feeds_from_ids

    encoded = tokenizer.encode(PROBE_TEXTS)
    names = [t.name for t in runner.signature.inputs]
    feeds = feeds_from_ids(names, encoded.input_ids, encoded.token_type_ids, tokenizer.pad_id)
    outputs = runner.run({t.name: feeds[t.name].astype(t.dtype) for t in runner.signature.inputs})
    return [outputs[t.name] for t in runner.signature.outputs]


def prove_weights(program, tokenizer) -> None:
    """Load the program with its weights and run the probe texts through it, before anything is
    written: a truncated, corrupt or mismatched weights file fails here, naming that file."""
    from serving_core.runtime import create_runner

    kind = RuntimeKind.ONNXRUNTIME if program.format is ProgramFormat.ONNX else RuntimeKind.PADDLE
    try:
        _probe_outputs(create_runner(kind, program), tokenizer)
    except Exception as exc:
        raise UserError(f"the program cannot run with these weights ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:300]}); the file may be truncated, corrupt or from "
                        "another model: export it again", str(program.params_file or program.model_file)) from exc


CONVERSION_TOLERANCE = 1e-3  # largest output difference ONNX Runtime may show against Paddle Inference


def check_conversion(program, converted, tokenizer) -> None:
    """The ONNX model must compute what the Paddle program does: both run a few texts, and a
    difference over CONVERSION_TOLERANCE fails the build (paddle2onnx has lost weights of some
    Paddle 2.x programs silently)."""
    import numpy as np

    from serving_core.runtime import OnnxRunner, PaddleRunner

    results = [_probe_outputs(runner, tokenizer) for runner in (PaddleRunner(program), OnnxRunner(converted))]
    worst = max(float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()) for a, b in zip(*results))
    if not worst <= CONVERSION_TOLERANCE:
        raise UserError(f"the ONNX conversion does not compute what the program does (largest output difference "
                        f"{worst:.3g} on sample texts); serve this program with --runtime paddle",
                        str(program.model_file))
    log.info("ONNX conversion checked: largest output difference %.2g", worst)


def check_runtime_options(options: BuildOptions, program) -> None:
    """Refuse runtime choices that cannot work here, with what to do instead."""
    if options.gpu_onnxruntime and options.target != "triton":
        raise UserError("--gpu-onnxruntime is a Triton model step; build it with --target triton")
    if options.quantize == "int8" and options.runtime is not RuntimeKind.ONNXRUNTIME:
        raise UserError("--quantize int8 runs on ONNX Runtime: add --runtime onnxruntime")
    if options.precision == "bf16":
        if options.runtime is not RuntimeKind.PADDLE:
            raise UserError("--precision bf16 is for the paddle runtime (oneDNN bfloat16)")
        if not cpu_has_bf16():
            raise UserError("--precision bf16 needs a CPU with AMX or AVX512-BF16 (no amx_bf16/avx512_bf16 in "
                            "/proc/cpuinfo); serve fp32 or use --runtime onnxruntime --quantize int8")
    if options.runtime is RuntimeKind.PADDLE and program.format is not ProgramFormat.ONNX and is_quantized(program):
        _check_paddle_int8_runs(program)


def _check_paddle_int8_runs(program) -> None:
    """An INT8 Paddle program (quantize/dequantize ops) is served only if Paddle Inference runs it here."""
    import numpy as np

    try:
        runner = PaddleRunner(program)
        runner.run({t.name: np.ones((1, 4), dtype=t.dtype) for t in runner.signature.inputs})
    except Exception as exc:
        raise UserError(f"this is an INT8 Paddle program and Paddle Inference cannot run it on this CPU "
                        f"({type(exc).__name__}: {str(exc)[:200]}). Export the FP32 model and build with "
                        "--runtime onnxruntime --quantize int8 instead", str(program.model_file)) from exc


def spec_labels(spec) -> tuple[str, ...]:
    """The labels a build reports: classes, tags or intents."""
    settings = spec.postprocess
    return tuple(getattr(settings, "labels", None) or getattr(settings, "intents", ()))


def calibrate(spec, program, serving_program, tokenizer, source, options: BuildOptions):
    """INT8 against the FP32 program on calibration texts, with the spec's own windows."""
    pairs = spec.window.mode == "qa" or spec.text_pair
    rows = calibration_rows(options.quantize_options, source.directory, pairs)
    return check_int8(program, serving_program, tokenizer, spec.window, rows, options.quantize_options)
