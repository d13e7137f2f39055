"""The one encoder (texts -> model feeds) and programs that take attention_mask / position_ids."""
from __future__ import annotations

import shutil

import pytest

from serving_core.encoder import FeedEncoder
from serving_core.tokenization import ErnieTokenizer, TokenizerSettings
from serving_core.windows import TokenizerMode, WindowSettings

ALL_INPUTS = ["input_ids", "token_type_ids", "attention_mask", "position_ids"]


@pytest.fixture()
def tokenizer(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"打开空调播放音乐"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return ErnieTokenizer.from_files(tmp_path / "vocab.txt", TokenizerSettings(max_seq_len=6))


def test_truncate_mode_fills_every_known_input(tokenizer):
    encoded = FeedEncoder(tokenizer, WindowSettings(), ALL_INPUTS).encode([["打开空调", "播放"]])
    ids = encoded.feeds["input_ids"]
    assert ids.tolist() == [[2, 5, 6, 7, 8, 3], [2, 9, 10, 3, 0, 0]]
    assert encoded.feeds["attention_mask"].tolist() == (ids != 0).astype(int).tolist()
    assert encoded.feeds["position_ids"].tolist() == [list(range(6))] * 2
    assert encoded.feeds["token_type_ids"].sum() == 0
    assert encoded.truncated.tolist() == [False, False] and encoded.windows is None


def test_window_modes_fill_every_known_input_and_flatten_real_windows(tokenizer):
    window = WindowSettings(TokenizerMode.WINDOWS.value, stride=2, max_windows=0)
    encoded = FeedEncoder(tokenizer, window, ALL_INPUTS).encode([["打开空调播放音乐", "打开"]])
    assert encoded.feeds["input_ids"].ndim == 3 and encoded.windows.windows.tolist() == [3, 1]
    flat, live = encoded.flat_rows(tokenizer.pad_id)
    assert live.sum() == 4 and flat["input_ids"].shape[0] == 4
    assert (flat["attention_mask"] == (flat["input_ids"] != 0)).all()
    qa = WindowSettings(TokenizerMode.QA.value, stride=2, max_question_len=2)
    encoded = FeedEncoder(tokenizer, qa, ["input_ids", "token_type_ids"]).encode([["打开"], ["空调播放音乐"]])
    assert encoded.feeds["token_type_ids"][0, 0].tolist()[:4] == [0, 0, 0, 0]


def test_an_unknown_input_is_named(tokenizer):
    with pytest.raises(KeyError, match="pixel_values"):
        FeedEncoder(tokenizer, WindowSettings(), ["pixel_values"]).encode([["打开"]])


@pytest.mark.server
def test_a_program_taking_attention_mask_and_position_ids_builds_calibrates_serves_and_verifies(
        example_model, tmp_path):
    """The drift bug: such programs served, but INT8 calibration and verify crashed (KeyError)."""
    import paddle

    from builder.build import build
    from builder.source.export import load_dygraph_model
    from builder.options import BuildOptions
    from builder.engine.quantize import QuantizeOptions
    from builder.serving.triton_server import ServerPorts, TritonServer
    from builder.source.detect import inspect_source
    from builder.verify import verify
    from serving_core.interface import Task
    from serving_core.program import find_program, read_signature
    from serving_core.runtime import RuntimeKind

    export = tmp_path / "four_inputs"
    model = load_dygraph_model(inspect_source(example_model), Task.SEQ_CLS)
    # PaddleNLP's forward order: input_ids, token_type_ids, position_ids, attention_mask.
    specs = [paddle.static.InputSpec([None, None], "int64", name)
             for name in ("input_ids", "token_type_ids", "position_ids", "attention_mask")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=specs, full_graph=True), str(export / "inference"))
    for name in ("vocab.txt", "tokenizer_config.json", "label.txt", "data.txt", "dev.txt"):
        if (example_model / name).is_file():
            shutil.copy2(example_model / name, export / name)
    assert {t.name for t in read_signature(find_program(export)).inputs} == set(ALL_INPUTS)

    repo = tmp_path / "repo"
    build(export, repo, BuildOptions(task=Task.SEQ_CLS, name="four"), show_progress=False)
    report = build(export, repo, BuildOptions(task=Task.SEQ_CLS, name="four_int8", runtime=RuntimeKind.ONNXRUNTIME,
                                              quantize="int8", quantize_options=QuantizeOptions()),
                   show_progress=False)
    assert report.calibration["texts"] > 0
    texts = [line.split("\t")[0] for line in (example_model / "data.txt").read_text().splitlines()[:20]]
    with TritonServer(repo, ServerPorts.free()) as server:
        exact = verify(repo, "four", server.grpc_url, [(t,) for t in texts])
        assert exact.passed and exact.agreement == 1.0, exact.to_json()
        assert verify(repo, "four_int8", server.grpc_url, [(t,) for t in texts], tolerance=0.1,
                      min_agreement=0.8).passed
