"""Checkpoints as PaddleNLP 3's save_pretrained writes them: model.safetensors, sharded
safetensors and sharded .pdparams with their index json. Each builds, serves on the real
server and passes verify; with both pickle and safetensors weights present the safetensors
are loaded (a pickle that is not even readable does not matter)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.build import build
from builder.options import BuildOptions
from builder.serving.triton_server import ServerPorts, TritonServer
from builder.source.detect import SourceKind, inspect_source
from builder.verify import verify
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

pytestmark = pytest.mark.server

TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "label.txt", "data.txt")
ROWS = [("打开空调",), ("播放周杰伦的花心",), ("导航到北京西站",), ("把温度调到22度",), ("明天天气怎么样",)]


def _save(example: Path, target: Path, **save_options) -> Path:
    from paddlenlp.transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(example))
    model.save_pretrained(str(target), **save_options)
    for name in TOKENIZER_FILES:
        shutil.copy2(example / name, target / name)
    return target


@pytest.fixture(scope="module")
def checkpoints(example_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    saved = {
        "safetensors": _save(example_model, root / "safetensors", safe_serialization=True),
        "sharded_safetensors": _save(example_model, root / "sharded_safetensors", safe_serialization=True,
                                     max_shard_size="2MB"),
        "sharded_pdparams": _save(example_model, root / "sharded_pdparams", safe_serialization=False,
                                  max_shard_size="2MB"),
    }
    both = _save(example_model, root / "both", safe_serialization=True)
    (both / "model_state.pdparams").write_bytes(b"not a pickle at all")
    saved["both"] = both
    return saved


def test_save_pretrained_wrote_what_the_names_say(checkpoints):
    assert (checkpoints["safetensors"] / "model.safetensors").is_file()
    assert len(list(checkpoints["sharded_safetensors"].glob("model-*-of-*.safetensors"))) >= 2
    assert (checkpoints["sharded_safetensors"] / "model.safetensors.index.json").is_file()
    assert (checkpoints["sharded_pdparams"] / "model_state.pdparams.index.json").is_file()
    for directory in checkpoints.values():
        assert inspect_source(directory).kind is SourceKind.CHECKPOINT


def test_every_layout_builds_serves_and_verifies(checkpoints, tmp_path):
    repository = tmp_path / "repo"
    for name, directory in checkpoints.items():
        build(directory, repository, BuildOptions(task=Task.SEQ_CLS, name=name, runtime=RuntimeKind.ONNXRUNTIME),
            show_progress=False)
    with TritonServer(repository, ServerPorts.free()) as server:
        for name, directory in checkpoints.items():
            report = verify(repository, name, server.grpc_url, ROWS)
            assert report.passed, (name, report.to_json())
            print(f"\n{name}: agreement {report.agreement}, max diff {report.max_diff:.2g}")
