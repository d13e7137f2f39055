"""Export a PaddleNLP dygraph checkpoint to a static Paddle 3 (PIR) program."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.program import ProgramFiles, ProgramFormat

from builder.source.mindspore import load_student
from builder.source.detect import (ModelSource, SourceKind, check_config_fits_weights, checkpoint_weights, config_files,
                                   weight_files)
from builder.source.pickled_weights import safetensors_copy

log = logging.getLogger(__name__)

_AUTO_CLASSES = {Task.SEQ_CLS: "AutoModelForSequenceClassification",
                 Task.TOKEN_CLS: "AutoModelForTokenClassification",
                 Task.QA: "AutoModelForQuestionAnswering"}


def load_dygraph_model(source: ModelSource, task: Task, pooling: str = "cls"):
    """The finetuned model as PaddleNLP loads it (eval mode); a MindSpore student mapped onto
    PaddleNLP's TinyBERT; for an embedding, the encoder with its `pooling` on top
    (builder.source.pooling)."""
    import paddlenlp.transformers as transformers

    if source.kind is SourceKind.MINDSPORE:
        if task is not Task.SEQ_CLS:
            raise UserError(f"a MindSpore TinyBERT student is a sequence classifier (BertModelCLS); build it with "
                            f"--task seq_cls, not {task}", str(source.directory))
        return load_student(source.mindspore_files[0], source.config)

    if task is Task.EMBEDDING:
        from builder.source.pooling import pooled_encoder

        if source.kind is SourceKind.SENTENCE_TRANSFORMERS:  # HF BERT weights, the modules after it
            from builder.source.sentence_transformers import load_encoder

            weights = Path(source.directory) / "model.safetensors"
            check_config_fits_weights(source.config, [weights], source.directory)
            encoder = load_encoder(source.directory, source.config, weights)
            return pooled_encoder(encoder, pooling, source.encoder_layout.dense)
        layout = source.encoder_layout  # a semantic-search checkpoint: encoder under `ptm.`, a projection
        if layout is not None:
            encoder = _from_pretrained(source, transformers.AutoModel, layout.encoder_prefix)
            return pooled_encoder(encoder, layout.pooling, layout.dense)
        return pooled_encoder(_from_pretrained(source, transformers.AutoModel), pooling)
    if task not in _AUTO_CLASSES:
        raise UserError(f"a {task} checkpoint cannot be exported by the builder (custom model class); export it "
                        "with its training script (the seed's --do_export --input_dtype int32) and pass the "
                        "export directory", str(source.directory))
    return _from_pretrained(source, getattr(transformers, _AUTO_CLASSES[task]))


def _from_pretrained(source: ModelSource, auto_class, prefix: str = ""):
    """`auto_class.from_pretrained` of the checkpoint, its pickled weights read by the allow-list;
    with `prefix`, of the tensors whose names start with it, the prefix taken off."""
    weights = checkpoint_weights(Path(source.directory))
    files = weight_files(weights)
    with tempfile.TemporaryDirectory(prefix="ernie-weights-") as work:
        directory = Path(source.directory)
        # Pickles: read by the allow-list, given to PaddleNLP as safetensors; so are renamed tensors.
        if prefix or not weights.name.startswith("model.safetensors"):
            rename = (lambda name: name[len(prefix):] if name.startswith(prefix) else None) if prefix else None
            directory = safetensors_copy(config_files(source.directory), files, Path(work), rename)
            files = [directory / "model.safetensors"]
        check_config_fits_weights(source.config, files, source.directory)
        try:
            model = auto_class.from_pretrained(str(directory), use_safetensors=True)
        except Exception as exc:
            raise UserError(f"PaddleNLP could not load the checkpoint ({type(exc).__name__}: {exc}); "
                            f"check config.json and {weights.name} come from the same save_pretrained",
                            str(source.directory)) from exc
    model.eval()
    return model


def export_checkpoint(source: ModelSource, task: Task, output_dir: Path, int_dtype: str = "int64",
                      model=None, pooling: str = "cls") -> ProgramFiles:
    """paddle.jit.to_static + paddle.jit.save into output_dir/inference.{json,pdiparams}, of
    `model` where the caller has loaded it already (to_static turns it into the static program:
    run it as the source model before, not after)."""
    import paddle

    model = model if model is not None else load_dygraph_model(source, task, pooling)
    specs = [paddle.static.InputSpec([None, None], int_dtype, "input_ids"),
             paddle.static.InputSpec([None, None], int_dtype, "token_type_ids")]
    output_dir.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to a static program (%s inputs)", source.directory, int_dtype)
    static_model = paddle.jit.to_static(model, input_spec=specs, full_graph=True)
    paddle.jit.save(static_model, str(output_dir / "inference"))
    return ProgramFiles(ProgramFormat.PIR, output_dir / "inference.json", output_dir / "inference.pdiparams")


EXPORT_CACHE_ENV = "ERNIE_SERVING_EXPORT_CACHE"


def export_once(source: ModelSource, task: Task, output_dir: Path, int_dtype: str = "int64",
                model=None, pooling: str = "cls") -> ProgramFiles:
    """`export_checkpoint`, reused from the directory $ERNIE_SERVING_EXPORT_CACHE when it is set:
    one export per checkpoint content, task, dtype and pooling (the test suite builds the same example
    checkpoints dozens of times; an export takes 5-7 s, reading one back well under one)."""
    cache = os.environ.get(EXPORT_CACHE_ENV)
    if not cache:
        return export_checkpoint(source, task, output_dir, int_dtype, model, pooling)
    head = f":{pooling}" if task is Task.EMBEDDING else ""
    digest = hashlib.sha256(f"{task.value}:{int_dtype}{head}".encode())
    directory = Path(source.directory)
    # A sentence-transformers model keeps its Pooling and Dense modules in subfolders.
    files = directory.glob("*/*") if source.kind is SourceKind.SENTENCE_TRANSFORMERS else ()
    for path in sorted(p for p in [*directory.iterdir(), *files] if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    target = Path(cache) / digest.hexdigest()[:32]
    files = ProgramFiles(ProgramFormat.PIR, target / "inference.json", target / "inference.pdiparams")
    if files.params_file.is_file():
        log.info("reusing the export of %s from %s", source.directory, target)
        return files
    Path(cache).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".export-"))
    try:
        export_checkpoint(source, task, staging, int_dtype, model, pooling)
        staging.rename(target)
    except OSError:  # another build exported the same checkpoint first
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files
