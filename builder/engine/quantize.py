"""INT8 model steps: ONNX Runtime's dynamic quantization or OpenVINO's static (NNCF), then a
calibration check against the source model.

ONNX Runtime's `quantize_dynamic` stores MatMul weights as INT8 (per tensor, or per channel
as an option) and, as an option, the embedding tables (Gather), like seed 000's
`embeddings` strategy. For OpenVINO, NNCF's post-training quantization measures activation
ranges on the calibration texts and writes OpenVINO IR with FakeQuantize operations, which
OpenVINO runs on its INT8 kernels. Before anything is written, the quantized model and the FP32 program
run the same calibration texts; if INT8 changes more than `1 - min_agreement` of the
decisions FP32 makes with a margin (near ties flip under any noise and do not count), the
build fails with the numbers instead of shipping a broken model
(PaddleNLP issue #4601: "INT8 model gives 0 accuracy on CPU").
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from serving_core.embedding import l2_normalize
from serving_core.errors import UserError
from serving_core.program import ProgramFiles, ProgramFormat, is_quantized
from serving_core.runtime import RuntimeKind, cpu_has_int8_dot, create_runner
from serving_core.seq_cls import softmax
from serving_core.tokenization import ErnieTokenizer
from serving_core.encoder import FeedEncoder
from serving_core.windows import WindowSettings

log = logging.getLogger(__name__)


REDUCE_RANGE_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class QuantizeOptions:
    per_channel: bool = False
    embeddings: bool = False  # also quantize the embedding tables (Gather)
    min_agreement: float = 0.99  # share of confident argmax decisions INT8 must keep
    calibration_file: Path | None = None  # texts, one a line (qa: question<TAB>context)
    # Weights in 7 bits (ONNX Runtime's reduce_range, NNCF's overflow fix on every layer), so that
    # CPUs without VNNI or AMX do not saturate; auto: on where the building CPU has neither.
    reduce_range: str = "auto"

    def __post_init__(self):
        if self.reduce_range not in REDUCE_RANGE_CHOICES:
            raise ValueError(f"reduce_range must be one of {REDUCE_RANGE_CHOICES}, got {self.reduce_range!r}")

    def resolved(self, flags: frozenset[str] | None = None) -> "QuantizeOptions":
        """These options with auto decided for the CPU of `flags` (default: this one)."""
        if self.reduce_range != "auto":
            return self
        return replace(self, reduce_range="off" if cpu_has_int8_dot(flags) else "on")

    @property
    def reduces_range(self) -> bool:
        return self.resolved().reduce_range == "on"


CONFIDENT_MARGIN = 0.05  # a decision counts when FP32's top two probabilities are this far apart


@dataclass(frozen=True)
class CalibrationReport:
    texts: int
    agreement: float  # argmax agreement over all decisions
    confident_agreement: float  # over decisions FP32 made with a margin >= CONFIDENT_MARGIN (the gate)
    max_probability_diff: float
    fp32_mb: float
    int8_mb: float

    def to_json(self) -> dict:
        return {"texts": self.texts, "agreement": round(self.agreement, 6),
                "confident_agreement": round(self.confident_agreement, 6),
                "max_probability_diff": float(f"{self.max_probability_diff:.3g}"),
                "fp32_mb": round(self.fp32_mb, 2), "int8_mb": round(self.int8_mb, 2)}


def quantize_dynamic_int8(onnx_model: ProgramFiles, output_file: Path, options: QuantizeOptions) -> ProgramFiles:
    """paddle2onnx keeps weights as Constant/Identity nodes, which quantize_dynamic skips: ONNX
    Runtime's basic graph optimizations fold them into initializers first (what its
    quant_pre_process runs too, without holding the model in Python meanwhile and shape-inferring
    it twice: 1.3 GB instead of 2.1 GB on ERNIE 3.0 Medium, the same quantized model)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = ["MatMul", "Gather"] if options.embeddings else ["MatMul"]
    reduce_range = options.reduces_range
    log.info("quantizing %s to INT8 (%s, per_channel=%s, reduce_range=%s)", onnx_model.model_file.name,
             "+".join(op_types), options.per_channel, reduce_range)
    prepared = output_file.with_suffix(".pre.onnx")
    try:
        _fold_constants(onnx_model.model_file, prepared)
        quantize_dynamic(str(prepared), str(output_file), weight_type=QuantType.QInt8,
                         per_channel=options.per_channel, reduce_range=reduce_range,
                         op_types_to_quantize=op_types)
    except DecodeError as exc:
        raise _unreadable_temporary_model(exc, onnx_model.model_file) from exc
    finally:
        prepared.unlink(missing_ok=True)
    result = ProgramFiles(ProgramFormat.ONNX, output_file, None)
    if not is_quantized(result):
        raise UserError("ONNX Runtime quantized no operator of this model (no MatMul with constant weights?); "
                        "serve it in FP32", str(onnx_model.model_file))
    return result


def _fold_constants(model_file: Path, output_file: Path) -> None:
    """The model as ONNX Runtime's basic optimizations leave it (constants folded), written to `output_file`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(output_file)
    onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])  # writes, then let go


def _unreadable_temporary_model(exc: Exception, model_file: Path) -> UserError:
    """ONNX Runtime's quantizer round-trips the model through files in the temporary directory and
    writes them without checking the write: on a full disk it reads back a truncated model."""
    directory = tempfile.gettempdir()
    free_mb = shutil.disk_usage(directory).free / 2**20
    return UserError(f"ONNX Runtime's quantizer could not read back a model it wrote in {directory} ({exc}); "
                     f"{free_mb:.0f} MB are free there and a full disk truncates its files: free space, or set TMPDIR "
                     "to a directory with room for three copies of the model", str(model_file))


def _nncf():
    """NNCF, imported with its usage statistics off: from its import on it sends them to Google
    Analytics unless it believes it runs in CI (openvino_telemetry's rule), and a build never
    reaches out of the machine."""
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        import nncf
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved
    return nncf


def quantize_static_openvino(onnx_model: ProgramFiles, output_file: Path, feeds: list[dict[str, np.ndarray]],
                             options: QuantizeOptions) -> ProgramFiles:
    """NNCF post-training quantization (transformer preset) of the ONNX conversion as OpenVINO
    reads it, its ranges measured on `feeds` (the calibration texts, one text a batch); with
    reduce_range, NNCF's overflow fix on every MatMul. Written as OpenVINO IR (`output_file`,
    an .xml, and its .bin) with FP32 weights: NNCF's ONNX backend took 3.3x the memory
    (4.1 GB against 1.2 GB on ERNIE 3.0 Medium) for the same model."""
    import openvino

    nncf = _nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    reduce_range = options.reduces_range
    log.info("quantizing %s to INT8 for OpenVINO (NNCF, %d calibration texts, reduce_range=%s)",
             onnx_model.model_file.name, len(feeds), reduce_range)
    overflow_fix = OverflowFix.ENABLE if reduce_range else OverflowFix.DISABLE
    model = openvino.Core().read_model(str(onnx_model.model_file))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds),
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow_fix))
    del model
    model_file = Path(output_file).with_suffix(".xml")
    openvino.save_model(quantized, str(model_file), compress_to_fp16=False)
    return ProgramFiles(ProgramFormat.OPENVINO_IR, model_file, model_file.with_suffix(".bin"))


def calibration_rows(options: QuantizeOptions, model_dir: Path, pairs: bool) -> list[tuple[str, ...]]:
    """Calibration inputs: --calibration-texts, else the model's dev.txt / data.txt."""
    candidates = [options.calibration_file] if options.calibration_file else [model_dir / "dev.txt",
                                                                              model_dir / "data.txt"]
    for path in candidates:
        if path and Path(path).is_file():
            rows = []
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                fields = line.split("\t")
                if line.strip():
                    rows.append(tuple(fields[:2]) if pairs else (fields[0],))
            if rows:
                return rows
    raise UserError("--quantize int8 needs calibration texts to check the INT8 model against FP32: pass "
                    "--calibration-texts FILE (one text a line; qa: question<TAB>context)", str(model_dir))


def _runs_side_by_side(reference, int8: ProgramFiles, runtime: RuntimeKind, tokenizer: ErnieTokenizer,
                       window: WindowSettings, rows: list[tuple[str, ...]]):
    """Per chunk of 16 rows: (input_ids, the FP32 source model's outputs, the INT8 model's, in
    the same order), on the same windows laid out as `window` says by the serving encoder."""
    quantized = create_runner(runtime, int8, num_threads=2)
    encoder = FeedEncoder(tokenizer, window, sorted({*reference.input_names,
                                                     *(t.name for t in quantized.signature.inputs)}))
    for start in range(0, len(rows), 16):
        chunk = rows[start:start + 16]
        feeds, _ = encoder.encode([list(column) for column in zip(*chunk)]).flat_rows(tokenizer.pad_id)
        got = quantized.run({t.name: feeds[t.name].astype(t.dtype) for t in quantized.signature.inputs})
        # Outputs in order: paddle2onnx renames a legacy program's (save_infer_model/... -> fetch_name_*).
        yield (feeds["input_ids"], [a.astype(np.float32) for a in reference.run(feeds)],
               [got[t.name].astype(np.float32) for t in quantized.signature.outputs])


def _size_mb(files: ProgramFiles) -> float:
    return sum(Path(p).stat().st_size for p in (files.model_file, files.params_file) if p) / 2**20


def check_int8(reference, fp32: ProgramFiles, int8: ProgramFiles, runtime: RuntimeKind, tokenizer: ErnieTokenizer,
               window: WindowSettings, rows: list[tuple[str, ...]], options: QuantizeOptions) -> CalibrationReport:
    """Run the FP32 source model (`builder.reference.SourceModel`) and the INT8 model on the same
    windows; compare the argmax of every output at real positions. `fp32` is the program INT8 was
    made from (its size is reported)."""
    agree, total, confident_agree, confident_total, worst = 0, 0, 0, 0, 0.0
    for ids, expected, got in _runs_side_by_side(reference, int8, runtime, tokenizer, window, rows):
        real = ids != tokenizer.pad_id
        for a, b in zip(expected, got):
            if a.ndim == 3 or (a.ndim == 2 and a.shape[1] == ids.shape[1]):  # per-token outputs
                a, b = (a[real], b[real]) if a.ndim == 3 else (np.where(real, a, -1e4), np.where(real, b, -1e4))
            same = a.argmax(axis=-1) == b.argmax(axis=-1)
            probabilities = softmax(a)
            top_two = np.sort(probabilities, axis=-1)[..., -2:]
            confident = (top_two[..., 1] - top_two[..., 0]) >= CONFIDENT_MARGIN
            agree, total = agree + int(same.sum()), total + same.size
            confident_agree += int(same[confident].sum())
            confident_total += int(confident.sum())
            worst = max(worst, float(np.abs(probabilities - softmax(b)).max()))
    agreement = agree / max(total, 1)
    # No confident decision at all (an untrained or freshly pruned model): gate on all of them.
    confident = confident_agree / confident_total if confident_total else agreement
    report = CalibrationReport(len(rows), agreement, confident, worst, _size_mb(fp32), _size_mb(int8))
    log.info("INT8 calibration: %s", report.to_json())
    if report.confident_agreement < options.min_agreement:
        raise UserError(f"the INT8 model keeps only {report.confident_agreement:.1%} of the confident FP32 decisions "
                        f"(top-2 margin >= {CONFIDENT_MARGIN}; {report.agreement:.1%} of all) on {len(rows)} "
                        f"calibration texts (minimum {options.min_agreement:.0%}; max probability difference "
                        f"{report.max_probability_diff:.3f}). Not written. Try --quantize-per-channel, leave the "
                        "embeddings in FP32, calibrate with texts like production traffic, or serve FP32.")
    return report


MIN_INT8_COSINE = 0.99  # the least cosine similarity an INT8 vector may have with the FP32 source's
NEIGHBOUR_MARGIN = 0.01  # a nearest neighbour counts when FP32's best two similarities are this far apart


@dataclass(frozen=True)
class VectorCalibrationReport:
    """INT8 embeddings against the FP32 source model's, on the calibration texts."""

    texts: int
    min_cosine: float  # the lowest cosine of a text's INT8 vector with its FP32 vector (gate: MIN_INT8_COSINE)
    mean_cosine: float
    neighbours_kept: float  # share of texts whose nearest other text is the same under INT8
    # ... where FP32's nearest is NEIGHBOUR_MARGIN ahead of the next (the gate); None where no text's is
    # (a model whose texts all lie that close has no neighbour order to keep: cosine alone gates it)
    confident_neighbours_kept: float | None
    fp32_mb: float
    int8_mb: float

    def to_json(self) -> dict:
        return {"texts": self.texts, "min_cosine": round(self.min_cosine, 6), "mean_cosine": round(self.mean_cosine, 6),
                "neighbours_kept": round(self.neighbours_kept, 6),
                "confident_neighbours_kept": None if self.confident_neighbours_kept is None
                else round(self.confident_neighbours_kept, 6),
                "fp32_mb": round(self.fp32_mb, 2), "int8_mb": round(self.int8_mb, 2)}


def check_int8_vectors(reference, fp32: ProgramFiles, int8: ProgramFiles, runtime: RuntimeKind,
                       tokenizer: ErnieTokenizer, rows: list[tuple[str, ...]],
                       options: QuantizeOptions) -> VectorCalibrationReport:
    """An embedding's INT8 model against the FP32 source model on the calibration texts (one
    window each): every vector within cosine MIN_INT8_COSINE, and each text's nearest neighbour
    among the others kept for `options.min_agreement` of the texts where FP32's is clear."""
    expected, got = [], []
    for _, a, b in _runs_side_by_side(reference, int8, runtime, tokenizer, WindowSettings(), rows):
        expected.append(a[0])
        got.append(b[0])
    fp32_vectors, int8_vectors = l2_normalize(np.concatenate(expected)), l2_normalize(np.concatenate(got))
    cosine = (fp32_vectors * int8_vectors).sum(axis=1)
    kept, clear = _nearest_kept(fp32_vectors, int8_vectors)
    report = VectorCalibrationReport(len(rows), float(cosine.min()), float(cosine.mean()), float(kept.mean()),
                                     float(kept[clear].mean()) if clear.any() else None, _size_mb(fp32), _size_mb(int8))
    log.info("INT8 calibration: %s", report.to_json())
    if report.confident_neighbours_kept is None:
        log.warning("no calibration text's nearest neighbour is %s more similar than its next: the neighbour check "
                    "has nothing to judge, INT8 is gated by cosine alone (calibrate with texts like production "
                    "traffic)", NEIGHBOUR_MARGIN)
    kept_enough = report.confident_neighbours_kept is None or report.confident_neighbours_kept >= options.min_agreement
    if report.min_cosine < MIN_INT8_COSINE or not kept_enough:
        kept_text = "n/a" if report.confident_neighbours_kept is None else f"{report.confident_neighbours_kept:.1%}"
        raise UserError(f"the INT8 vectors are within cosine {report.min_cosine:.4f} of FP32's at worst (minimum "
                        f"{MIN_INT8_COSINE}) and keep {kept_text} of the clear nearest neighbours (minimum "
                        f"{options.min_agreement:.0%}) on {len(rows)} calibration texts. Not written. Try "
                        "--quantize-per-channel, calibrate with texts like production traffic, or serve FP32.")
    return report


def _nearest_kept(fp32: np.ndarray, int8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per text (unit rows): whether INT8's nearest other text is FP32's, and whether FP32's
    nearest is NEIGHBOUR_MARGIN more similar than its second."""
    if len(fp32) < 3:
        return np.ones(len(fp32), dtype=bool), np.ones(len(fp32), dtype=bool)
    similarity, similarity_int8 = fp32 @ fp32.T, int8 @ int8.T
    np.fill_diagonal(similarity, -np.inf)
    np.fill_diagonal(similarity_int8, -np.inf)
    top_two = np.sort(similarity, axis=1)[:, -2:]
    kept = similarity.argmax(axis=1) == similarity_int8.argmax(axis=1)
    return kept, top_two[:, 1] - top_two[:, 0] >= NEIGHBOUR_MARGIN
