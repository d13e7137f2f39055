"""`builder build`: model directory -> Triton model repository."""
from __future__ import annotations

import datetime
import errno
import functools
import logging
import re
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

from serving_core.embedding import AS_EXPORTED
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.program import ProgramFormat, ProgramSignature, is_quantized, position_rows, read_signature
from serving_core.tensors import TensorSpec
from serving_core.runtime import PaddleRunner, RuntimeKind, cpu_has_bf16, create_runner
from serving_core.windows import WindowSettings
from serving_core.encoder import FeedEncoder
from serving_core.tokenization import (DEFAULT_MAX_SEQ_LEN, ErnieTokenizer, duplicated_tokens, read_vocab_lines,
                                       settings_from_tokenizer_config, vocab_from_lines)

from builder.source.program_probe import probe_program
from builder.engine.choice import choose_engine, choose_for_quantized_program, expect_from_file
from builder.engine.proof import (SourceProbe, cannot_run, load_source_model, probe_record, prove_converted,
                                  prove_paddle, served_tolerance)
from builder.phases import PhaseClock, phase
from builder.source.export import export_once
from builder.source.onnx_conversion import convert_to_onnx, converter_ready
from builder.engine.quantize import (calibration_rows, check_int8, check_int8_vectors, quantize_dynamic_int8,
                                    quantize_static_openvino)
from builder.options import BuildOptions
from builder.staging import CORE_DIR
from builder.triton.repository import write_repository
from builder.triton.wiring import check_wiring
from builder.specs import PLANNERS, PlanInputs
from builder.triton.target import repository_plan
from builder.source.reference import SourceModel
from builder.source.detect import ModelSource, SourceKind, check_task, checkpoint_weights, inspect_source

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
    engine_note: str = ""  # what the engine proof changed (e.g. oneDNN off), and its measured cost
    cost: dict | None = None  # PhaseClock.to_json(): seconds and peak memory per phase


def ensemble_name_for(directory: Path) -> str:
    """A Triton-safe model name from a directory name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", directory.resolve().name).strip("._-")
    return name or "ernie"


def resolve_max_seq_len(source: ModelSource, requested: int | None) -> int:
    """--max-seq-len, or min(DEFAULT_MAX_SEQ_LEN, what the model takes): the config's
    max_position_embeddings and, for a program, the rows of its position table as its weights
    have them (the seed's compression recipe cuts the table to max_seq_length, 16, while the
    config may still say 2048; a longer text would read past the table)."""
    limits = {"the config's max_position_embeddings": int(source.config.get("max_position_embeddings", 0)) or None,
              "the program's position table": position_rows(source.program) if source.program else None}
    known = {what: rows for what, rows in limits.items() if rows}
    limit = min(known.values()) if known else None
    if requested is None:
        declared = source.encoder_layout.max_seq_length if source.encoder_layout else None
        if declared:  # sentence-transformers' max_seq_length: the vectors it computes are of texts cut there
            declared = min(declared, limit or declared)
            log.info("max_seq_len %d: the sentence-transformers model's max_seq_length", declared)
            return declared
        if limit and limit < DEFAULT_MAX_SEQ_LEN:
            log.info("max_seq_len %d: %s", limit, ", ".join(f"{what} has {rows}" for what, rows in known.items()))
        return min(DEFAULT_MAX_SEQ_LEN, limit) if limit else DEFAULT_MAX_SEQ_LEN
    if requested < 3:
        raise UserError(f"--max-seq-len {requested} leaves no room for text ([CLS] and [SEP] take 2)")
    if limit and requested > limit:
        what = min(known, key=known.get)
        raise UserError(f"--max-seq-len {requested} exceeds {what} ({limit} positions); use at most {limit}",
                        str(source.program.model_file if what.startswith("the program") else source.directory))
    return requested


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def build(model_dir: Path, output: Path, options: BuildOptions, show_progress: bool = True) -> BuildReport:
    """Compile the model in `model_dir` into `output`. A disk that is full, read-only or not
    ours fails it as bad input naming the directory (and, for space, about how much the build
    needs there); `output` stays as it was, whatever fails."""
    try:
        return _build(model_dir, output, options, show_progress)
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        raise write_error(exc, Path(model_dir), Path(output)) from exc


def write_error(exc: OSError, model_dir: Path, output: Path) -> UserError:
    """What to do about an OS error while writing: the directory, and the space a build needs
    (about twice the model's files, the export and the repository's copy, plus the step code)."""
    import shutil

    target = exc.filename2 or exc.filename  # a copy names its source first, its destination second
    where = Path(target).parent if target else output
    if where == output.parent or output.parent in where.parents:  # the staging directory beside the output
        where = output
    message = f"cannot write there ({exc.strerror})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        model = sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())
        core = sum(p.stat().st_size for p in CORE_DIR.rglob("*") if p.is_file())
        probe = where if where.exists() else output.parent
        free = shutil.disk_usage(probe).free if probe.exists() else 0
        message += (f": the build needs about {(2 * model + 4 * core) / 2**20:.0f} MB there, "
                    f"{free / 2**20:.0f} MB are free. Free some space, or choose another --output "
                    "(TMPDIR for the temporary export)")
    else:
        message += "; choose an --output you can write (and a writable TMPDIR)"
    return UserError(message + ". Nothing was changed in the output", str(where))


@dataclass(frozen=True)
class ModelToBuild:
    """The user's model as the build reads it: the source, the ensemble's name, the tokenizer."""

    source: ModelSource
    name: str
    max_seq_len: int
    tokenizer: ErnieTokenizer
    vocab_size: int  # ids the model's embedding table takes (the tokenizer writes no larger one)


def read_model(model_dir: Path, options: BuildOptions) -> ModelToBuild:
    source = inspect_source(model_dir, options.tokenizer_dir, options.labels_file, options.slot_labels_file,
                            options.program_file)
    check_task(source, options.task.value)
    if source.program is not None:
        probe_program(source.program)  # a crash of Paddle's loader on a corrupt program fails here, by name
    name = options.name or ensemble_name_for(source.directory)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
    max_seq_len = resolve_max_seq_len(source, options.max_seq_len)
    lines = read_vocab_lines(source.vocab_file)
    vocab = vocab_from_lines(lines, source.vocab_file)
    duplicates = duplicated_tokens(lines)
    if duplicates:
        log.warning("%s lists %d tokens more than once (%s); each gets the id of its last line, as PaddleNLP's "
                    "tokenizer gives it", source.vocab_file, len(duplicates),
                    ", ".join(f"{t!r} at lines {[i + 1 for i in ids]}" for t, ids in list(duplicates.items())[:5]))
    settings = replace(settings_from_tokenizer_config(source.tokenizer_dir, max_seq_len),
                       vocab_file=source.vocab_file.name)
    tokenizer = ErnieTokenizer(vocab, settings, str(source.vocab_file))
    vocab_size = tokenizer.vocab_size
    if source.config.get("vocab_size"):
        vocab_size = min(vocab_size, int(source.config["vocab_size"]))
    log.info("%s: %s, labels from %s (%s), max_seq_len %d", source.directory, source.kind.value,
             source.labels_origin, ", ".join(f"{k}: {len(v)}" for k, v in source.label_sets.items()) or "none",
             max_seq_len)
    return ModelToBuild(source, name, max_seq_len, tokenizer, vocab_size)


def embedding_pooling(source: ModelSource, options: BuildOptions) -> str | None:
    """--task embedding: the pooling exported with a checkpoint (--pooling, default cls), or a
    static export's own output (serving_core.embedding.AS_EXPORTED); None for other tasks."""
    if options.task is not Task.EMBEDDING:
        return None
    if source.kind is SourceKind.STATIC:
        if options.pooling is not None:
            raise UserError(f"--pooling {options.pooling}: a static export answers its own vectors (its pooling "
                            "was exported with it); build without --pooling, or pass the checkpoint",
                            str(source.program.model_file))
        return AS_EXPORTED
    if source.encoder_layout is not None:  # sentence-transformers' Pooling module, a semantic-search model's pooler
        pooling = source.encoder_layout.pooling
        if options.pooling not in (None, pooling):
            raise UserError(f"--pooling {options.pooling}: the model pools by {pooling} (its Pooling module, or a "
                            "semantic-search model's pooler), which its vectors were trained with; build without "
                            "--pooling", str(source.directory))
        return pooling
    if source.kind is not SourceKind.CHECKPOINT:
        raise UserError(f"a {source.kind.value} is a classifier; an embedding is built from an encoder's PaddleNLP "
                        "checkpoint, a sentence-transformers directory or a static export answering [batch, dim]",
                        str(source.directory))
    return options.pooling or "cls"


def embedding_normalize(source: ModelSource, options: BuildOptions) -> bool:
    """--normalize on|off, else what the model says: a sentence-transformers directory normalises
    where its modules end with Normalize (a semantic-search model always); other models are normalised."""
    if options.normalize is not None:
        return options.normalize
    return source.encoder_layout.normalize if source.encoder_layout is not None else True


def compare_engines(model_dir: Path, options: BuildOptions):
    """What `--runtime auto` would measure and choose for this model, nothing written (`builder bench`)."""
    model = read_model(model_dir, options)
    options = replace(options, pooling=embedding_pooling(model.source, options))
    with tempfile.TemporaryDirectory(prefix="ernie-bench-") as work, conversion_ahead(model.source, options):
        program, probe = source_outputs(model.source, options, model.tokenizer, Path(work))
        check_runtime_options(replace(options, runtime=None), program)
        engine = prepare_engine(model.source, replace(options, runtime=None, quantize=None), program,
                                read_signature(program), model.tokenizer, Path(work), probe)
    if engine.choice is None:
        raise UserError("--gpu-onnxruntime runs on ONNX Runtime only: nothing to compare", str(model_dir))
    return engine.choice


def _build(model_dir: Path, output: Path, options: BuildOptions, show_progress: bool = True) -> BuildReport:
    started = time.perf_counter()
    check_long_text(options)
    clock = PhaseClock()
    stages = tqdm(total=5, desc="build", unit="step", disable=not show_progress, leave=False)

    def stage(text: str) -> None:
        stages.set_postfix_str(text)
        log.info(text)

    with clock.running():
        stage("reading model directory")
        if options.quantize == "int8":  # auto decided here, for build.json and the model step's check
            options = replace(options, quantize_options=options.quantize_options.resolved())
        with phase("read"):
            model = read_model(model_dir, options)
        source, name, max_seq_len, tokenizer = model.source, model.name, model.max_seq_len, model.tokenizer
        options = replace(options, pooling=embedding_pooling(source, options),
                          normalize=embedding_normalize(source, options))
        tokenizer_settings, vocab_size = tokenizer.settings, model.vocab_size
        stages.update()

        with tempfile.TemporaryDirectory(prefix="ernie-build-") as work, conversion_ahead(source, options):
            work = Path(work)
            stage("running the source model" + (", exporting its static program" if source.program is None else ""))
            program, probe = source_outputs(source, options, tokenizer, work)
            signature = read_signature(program)
            log.info("program %s: inputs %s, outputs %s", program.model_file.name,
                     [(t.name, t.dtype) for t in signature.inputs],
                     [(t.name, list(t.shape)) for t in signature.outputs])
            stages.update()

            stage(f"preparing {options.runtime or 'the fastest correct'} engine")
            check_runtime_options(options, program)
            engine = prepare_engine(source, options, program, signature, tokenizer, work, probe)
            options, serving_program, signature, proof = engine.options, engine.files, engine.signature, engine.proof
            published_probe = publish_probe(probe, engine)
            stages.update()

            stage("planning ensemble")
            spec = PLANNERS[options.task](PlanInputs(name, options, program, serving_program, signature,
                                                     tokenizer_settings, source.label_sets, tokenizer.pad_id,
                                                     vocab_size, source.config.get("type_vocab_size"),
                                                     source.program.model_file if source.program else source.directory,
                                                     proof.onednn if proof else True))
            plan = repository_plan(spec, options.triton(), source.vocab_file, serving_program)
            check_wiring(plan.ensemble(), plan.configs())  # before either target is written
            stages.update()

            calibration = None
            if options.quantize == "int8":
                stage("checking INT8 against FP32")
                with phase("calibrate"):
                    calibration = calibrate(spec, source, program, serving_program, tokenizer, options).to_json()
            stage("writing repository")
            record = build_record(spec, source, options, signature, calibration, proof, engine.choice, clock)
            record["probe"] = published_probe
            with phase("write"):
                write_targets(spec, plan, record, serving_program, signature, source, options, Path(output))
            stages.update()
    stages.close()
    seconds = time.perf_counter() - started
    log.info("where the build's time and memory went (peak RSS; a child process's beside the build's own):\n%s",
             clock.table())
    notes = [engine.choice.describe() if engine.choice else "", proof.note if proof else ""]
    return BuildReport(name, Path(output), tuple(m.name for m in plan.models), source.kind.value,
                       spec_labels(spec), max_seq_len, options.runtime.value, seconds, calibration,
                       "; ".join(n for n in notes if n), clock.to_json())


def publish_probe(probe: SourceProbe, engine: "PreparedEngine") -> dict:
    """The probe build.json keeps for `builder publish` (builder.engine.proof.probe_record); an
    INT8 model, which the proof did not measure itself, is measured here."""
    options, proof = engine.options, engine.proof
    tolerance = proof.tolerance if proof is not None else None
    if options.quantize == "int8" or proof is None:
        with phase("measure served files"):
            runner = create_runner(options.runtime, engine.files, options.num_threads, options.precision,
                                   proof.onednn if proof is not None else True)
            tolerance = served_tolerance(probe, runner, f"{options.runtime.value} (served files)", proof)
    return probe_record(probe, engine.signature, tolerance)


def conversion_ahead(source: ModelSource, options: BuildOptions):
    """paddle2onnx's child started now where the build will likely convert (builder.source.onnx_conversion)."""
    import contextlib

    onnx_program = source.program is not None and source.program.format is ProgramFormat.ONNX
    likely = options.runtime in (None, RuntimeKind.ONNXRUNTIME, RuntimeKind.OPENVINO) and not onnx_program
    return converter_ready() if likely else contextlib.nullcontext()


def source_outputs(source: ModelSource, options: BuildOptions, tokenizer, work: Path):
    """(the static program, the source model's outputs on the probe texts): the source model is
    loaded once, run on the probe texts, then exported (a checkpoint), then let go."""
    weights = (source.program.params_file or source.program.model_file if source.program else
               source.mindspore_files[0] if source.mindspore_files else checkpoint_weights(source.directory))
    quantized = source.program is not None and source.program.format is not ProgramFormat.ONNX \
        and is_quantized(source.program)
    with phase("source model"):
        if quantized:
            _check_paddle_int8_runs(source.program)  # the program on Paddle is its own reference
        reference = load_source_model(source, options.task, weights or source.directory, options.pooling)
        probe = SourceProbe(reference, tokenizer, weights or source.directory, quantized=quantized)
    if source.program is not None:
        return source.program, probe
    with phase("export"):
        return export_once(source, options.task, work / "program", options.int_dtype, reference.dygraph_model,
                           options.pooling), probe


def build_record(spec, source: ModelSource, options: BuildOptions, signature: ProgramSignature,
                 calibration: dict | None, proof, choice, clock: PhaseClock | None = None) -> dict:
    """What build.json holds besides the file record: the spec, where the source and its inputs
    were (so that verify finds them), the program's signature, INT8 calibration, the engine proof."""
    def resolved(path) -> str | None:
        return str(Path(path).resolve()) if path else None

    beside = source.tokenizer_dir.resolve() == source.directory.resolve()
    program_file = (source.program.model_file.name if source.program else
                    source.mindspore_files[0].name if source.mindspore_files else None)
    return {
        "spec": spec.to_json(), "source": str(source.directory.resolve()), "source_kind": source.kind.name,
        "inputs": {"tokenizer_dir": None if beside else resolved(source.tokenizer_dir),
                   "labels_file": resolved(options.labels_file), "slot_labels_file": resolved(options.slot_labels_file),
                   "program_file": program_file},
        "labels_origin": source.labels_origin, "label_sets": {k: list(v) for k, v in source.label_sets.items()},
        "program_inputs": [asdict(t) for t in signature.inputs],
        "program_outputs": [asdict(t) for t in signature.outputs],
        "quantize": options.quantize, "calibration": calibration,
        "reduce_range": options.quantize_options.reduces_range if options.quantize else None,
        "engine_proof": proof.to_json() if proof else None,
        "engine_choice": choice.to_json() if choice else None,
        "build_cost": clock.to_json() if clock else None,  # the phases up to writing the repository
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_targets(spec, plan, record: dict, serving_program, signature: ProgramSignature, source: ModelSource,
                  options: BuildOptions, output: Path) -> None:
    """Paddle Serving first: its writer has the step more likely to fail (the prototxt child
    process); the Triton swap that follows is renames only."""
    if options.target in ("paddle-serving", "all"):
        from builder.paddle_serving.service import write_paddle_serving

        service_root = output / "paddle_serving" if options.target == "all" else output
        write_paddle_serving(spec, serving_program, signature, source.vocab_file, service_root / spec.name,
                             options.pipeline, options.overwrite)
    if options.target in ("triton", "all"):
        write_repository(plan, output / "triton" if options.target == "all" else output, record, options.overwrite)


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


@dataclass(frozen=True)
class PreparedEngine:
    """The engine a build serves: the options with the runtime settled, the files the model step
    runs and their signature as that runtime exposes them, the proof that it computes what the
    source model does, and what --runtime auto measured (None otherwise)."""

    options: BuildOptions
    files: object
    signature: ProgramSignature
    proof: object
    choice: object = None


def prepare_engine(source, options: BuildOptions, program, signature: ProgramSignature, tokenizer,
                   work: Path, probe: SourceProbe) -> PreparedEngine:
    if probe.quantized:
        return _prepare_quantized_program(probe, options, program, signature, tokenizer, work)
    if options.runtime is None and options.gpu_onnxruntime:  # the GPU step runs on ONNX Runtime
        options = replace(options, runtime=RuntimeKind.ONNXRUNTIME)
    convert = functools.lru_cache(maxsize=1)(lambda p: _try_convert(p, work / "model.onnx"))
    choice = None
    if options.runtime is None:
        kind, files, proof, choice = _auto_engine(probe, program, convert, options, source, tokenizer, signature, work)
        options = replace(options, runtime=kind)
    else:
        if options.runtime in (RuntimeKind.ONNXRUNTIME, RuntimeKind.OPENVINO):
            files = convert_to_onnx(program, work / "model.onnx")
            proof = prove_converted(probe, options.runtime, files, program, options.num_threads, options.precision)
        else:
            files, proof = program, prove_paddle(probe, program, options.precision, options.num_threads, convert)
        if options.quantize == "int8":
            files = _quantize(files, options, source, tokenizer, signature, work / "model.int8.onnx")
    if files is not program:
        signature = runtime_signature(signature, read_signature(files), program)
    return PreparedEngine(options, files, signature, proof, choice)


def _auto_engine(probe, program, convert, options: BuildOptions, source, tokenizer, signature, work: Path):
    """--runtime auto: choose_engine over the FP32 engines, or over the INT8 models of the engines
    that quantize when --quantize int8 is asked for."""
    expect = expect_from_file(Path(options.expect), tokenizer) if Path(options.expect).is_file() else options.expect

    def quantize(kind, onnx_files):
        output = work / f"model.int8.{kind.value}.onnx"
        return _quantize(onnx_files, replace(options, runtime=kind), source, tokenizer, signature, output)

    return choose_engine(probe, program, tokenizer, convert, options.num_threads, options.precision, expect,
                         quantize if options.quantize == "int8" else None)


def _quantize(files, options: BuildOptions, source, tokenizer, signature: ProgramSignature, output: Path):
    """INT8 of the ONNX conversion: dynamic for ONNX Runtime; static for OpenVINO, its ranges
    measured on (up to 300 of) the calibration texts."""
    with phase("quantize"):
        return _quantized(files, options, source, tokenizer, signature, output)


def _quantized(files, options: BuildOptions, source, tokenizer, signature: ProgramSignature, output: Path):
    if options.runtime is not RuntimeKind.OPENVINO:
        return quantize_dynamic_int8(files, output, options.quantize_options)
    rows = calibration_rows(options.quantize_options, source.directory, options.task is Task.QA or options.text_pair)
    encoder = FeedEncoder(tokenizer, WindowSettings(), [t.name for t in signature.inputs])
    dtypes = {t.name: t.dtype for t in signature.inputs}
    feeds = [{name: array.astype(dtypes[name]) for name, array in encoder.encode([[c] for c in row]).feeds.items()}
             for row in rows[:300]]
    return quantize_static_openvino(files, output, feeds, options.quantize_options)


def _try_convert(program, output: Path):
    """The ONNX conversion of a program, or None where paddle2onnx cannot convert it."""
    try:
        return convert_to_onnx(program, output)
    except Exception as exc:  # a second opinion only: its absence is logged, not fatal
        log.warning("no ONNX conversion to confirm Paddle's native kernels with (%s)", exc)
        return None


def _prepare_quantized_program(probe: SourceProbe, options: BuildOptions, program, signature: ProgramSignature,
                               tokenizer, work: Path) -> PreparedEngine:
    """A quantization-aware Paddle program: its reference is the program itself on Paddle's native
    kernels (`probe`). Auto measures every engine that runs it; a named runtime is proven alone:
    OpenVINO reads a Paddle 2.x program itself, ONNX Runtime needs paddle2onnx's conversion."""
    choice = None
    if options.runtime is None:
        convert = functools.partial(convert_to_onnx, output_file=work / "model.onnx")
        expect = expect_from_file(Path(options.expect), tokenizer) if Path(options.expect).is_file() \
            else options.expect
        kind, files, proof, choice = choose_for_quantized_program(probe, program, tokenizer, convert,
                                                                  options.num_threads, expect)
        options = replace(options, runtime=kind)
    elif options.runtime is RuntimeKind.PADDLE:
        files, proof = program, prove_paddle(probe, program, "fp32", options.num_threads)
    elif options.runtime is RuntimeKind.OPENVINO and program.format is ProgramFormat.LEGACY:
        files = program
        try:
            proof = prove_converted(probe, options.runtime, program, program, options.num_threads)
        except UserError:
            raise
        except Exception as exc:  # OpenVINO's Paddle reader has no INT8 embedding lookup (dequantize_log)
            raise UserError(f"OpenVINO cannot read this quantized program ({cannot_run(exc)}); serve it with "
                            "--runtime paddle",
                            str(program.model_file)) from exc
    else:
        try:
            files = convert_to_onnx(program, work / "model.onnx")
        except UserError as exc:
            raise UserError(f"{exc.message}; this quantized program runs on --runtime paddle (or openvino, "
                            "for a Paddle 2.x .pdmodel)", exc.path) from exc
        proof = prove_converted(probe, options.runtime, files, program, options.num_threads)
    if files is not program:
        signature = runtime_signature(signature, read_signature(files), program)
    return PreparedEngine(options, files, signature, proof, choice)


def check_long_text(options: BuildOptions) -> None:
    """Refuse --long-text where it cannot work, before any work is done."""
    if options.long_text != "truncate" and options.task not in (Task.SEQ_CLS, Task.EMBEDDING):
        raise UserError(f"--long-text is for seq_cls and embedding; {options.task.value} reads long text in windows "
                        "already (--stride, --max-windows)")
    if options.task is Task.EMBEDDING and options.long_text_aggregate not in (None, "mean"):
        raise UserError("an embedding's windows are averaged: build without --long-text-aggregate")
    for flag, on in (("--text-pair", options.text_pair), ("--direct", options.direct),
                     ("--gpu-onnxruntime", options.gpu_onnxruntime)):
        if on and options.long_text == "windows":
            raise UserError(f"--long-text windows reads single texts through the ensemble; build without {flag}")


def check_runtime_options(options: BuildOptions, program) -> None:
    """Refuse runtime choices that cannot work here, with what to do instead."""
    if options.gpu_onnxruntime and options.target != "triton":
        raise UserError("--gpu-onnxruntime is a Triton model step; build it with --target triton")
    if options.direct and options.target == "paddle-serving":
        raise UserError("--direct adds a Triton model; build it with --target triton or all")
    if options.direct and (options.task not in (Task.SEQ_CLS, Task.EMBEDDING) or options.multi_label
                           or options.gpu_onnxruntime):
        raise UserError("--direct serves single-label seq_cls and embedding on the CPU (a multi-label answer's "
                        "length varies per text, which a batched model cannot return); build without it")
    if options.quantize == "int8" and options.runtime not in (None, RuntimeKind.ONNXRUNTIME, RuntimeKind.OPENVINO):
        raise UserError("--quantize int8 runs on ONNX Runtime (dynamic) or OpenVINO (NNCF, static): add "
                        "--runtime onnxruntime or --runtime openvino")
    if options.precision == "bf16":
        if options.runtime not in (None, RuntimeKind.PADDLE, RuntimeKind.OPENVINO):
            raise UserError("--precision bf16 is for the paddle (oneDNN bfloat16) and openvino runtimes")
        if not cpu_has_bf16():
            raise UserError("--precision bf16 needs a CPU with AMX or AVX512-BF16 (no amx_bf16/avx512_bf16 in "
                            "/proc/cpuinfo); serve fp32 or use --runtime onnxruntime --quantize int8")
    if options.runtime is RuntimeKind.PADDLE and program.format is ProgramFormat.ONNX:
        raise UserError("an ONNX program runs on ONNX Runtime: build it with --runtime onnxruntime",
                        str(program.model_file))
    if (options.quantize or options.precision != "fp32") and is_quantized(program):
        flag = "--quantize int8" if options.quantize else f"--precision {options.precision}"
        raise UserError(f"this program is already INT8 (quantize/dequantize ops): build it without {flag}",
                        str(program.model_file))


def _check_paddle_int8_runs(program) -> None:
    """An INT8 Paddle program (quantize/dequantize ops) is its own reference on Paddle Inference: it is
    built only if Paddle Inference runs it here."""
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


CHECKED_CALIBRATION_TEXTS = 2000  # INT8 is checked against FP32 on at most this many (time and memory bounded)


def calibrate(spec, source, program, serving_program, tokenizer, options: BuildOptions):
    """INT8 against the FP32 source model on calibration texts, with the spec's own windows."""
    pairs = spec.window.mode == "qa" or spec.text_pair
    rows = calibration_rows(options.quantize_options, source.directory, pairs)
    if len(rows) > CHECKED_CALIBRATION_TEXTS:
        log.info("checking INT8 on the first %d of %d calibration texts", CHECKED_CALIBRATION_TEXTS, len(rows))
        rows = rows[:CHECKED_CALIBRATION_TEXTS]
    reference = SourceModel(source, options.task, options.pooling)
    if options.task is Task.EMBEDDING:  # vectors: cosine and nearest neighbours, not classes
        return check_int8_vectors(reference, program, serving_program, options.runtime, tokenizer, rows,
                                  options.quantize_options)
    return check_int8(reference, program, serving_program, options.runtime, tokenizer, spec.window, rows,
                      options.quantize_options)
