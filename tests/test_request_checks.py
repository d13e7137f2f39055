"""Units of the request checks and the server's safe defaults (no server started)."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from builder.serving.triton_server import RESTRICTED_APIS, TritonServer, check_private
from serving_core.errors import ServerError
from serving_core.errors import InvalidRequest
from serving_core.feed_checks import FeedLimits, check_feeds, check_finite, feed_limits
from serving_core.health import probe_body
from serving_core.tokenization import MIN_CHAR_LIMIT, char_limit, clip_texts, is_blank

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
LIMITS = feed_limits(["input_ids", "token_type_ids"], vocab_size=100, max_seq_len=8)


def test_valid_feeds_pass():
    check_feeds({"input_ids": np.array([[1, 99, 2]]), "token_type_ids": np.array([[0, 1, 1]])}, LIMITS)


@pytest.mark.parametrize("feeds, message", [
    ({"input_ids": np.array([[1, 100, 2]]), "token_type_ids": np.zeros((1, 3), int)}, "outside"),
    ({"input_ids": np.array([[1, -1, 2]]), "token_type_ids": np.zeros((1, 3), int)}, "outside"),
    ({"input_ids": np.array([[1, 5, 2]]), "token_type_ids": np.array([[0, 2, 0]])}, "outside"),
    ({"input_ids": np.ones((1, 9), int), "token_type_ids": np.zeros((1, 9), int)}, "positions"),
    ({"input_ids": np.ones((1, 3), int), "token_type_ids": np.zeros((1, 2), int)}, "the other inputs"),
    ({"input_ids": np.ones((1, 3), int)}, "missing"),
    ({"input_ids": np.ones((1, 3), np.float32), "token_type_ids": np.zeros((1, 3), int)}, "integer"),
    ({"input_ids": np.ones((1, 1, 3), int), "token_type_ids": np.zeros((1, 1, 3), int)}, "dims"),
])
def test_bad_feeds_are_named(feeds, message):
    with pytest.raises(InvalidRequest, match=message):
        check_feeds(feeds, LIMITS)


def test_windows_are_bounded():
    limits = FeedLimits({"input_ids": 10}, max_seq_len=4, sequence_rank=2, max_windows=2)
    check_feeds({"input_ids": np.ones((1, 2, 4), int)}, limits)
    with pytest.raises(InvalidRequest, match="windows"):
        check_feeds({"input_ids": np.ones((1, 3, 4), int)}, limits)


def test_type_ids_follow_a_smaller_type_vocabulary():
    assert feed_limits(["token_type_ids"], 10, 8, type_vocab_size=1).value_limits == {"token_type_ids": 1}
    assert feed_limits(["token_type_ids"], 10, 8, type_vocab_size=4).value_limits == {"token_type_ids": 2}


def test_non_finite_outputs_are_refused():
    check_finite({"logits": np.zeros((2, 3), np.float32), "ids": np.zeros(2, np.int64)})
    with pytest.raises(InvalidRequest, match="non-finite"):
        check_finite({"logits": np.array([[0.0, np.nan]], np.float32)})


def test_texts_are_clipped_by_characters_and_flagged():
    texts, cut = clip_texts(["a" * 10, "b" * 3], 5)
    assert texts == ["a" * 5, "b" * 3] and cut.tolist() == [True, False]
    assert clip_texts(["a" * 10], 0)[1].tolist() == [False]
    assert char_limit(1) == MIN_CHAR_LIMIT and char_limit(1000) == 16_000


def test_tokenizer_flags_a_clipped_text(example_model):
    from serving_core.tokenization import ErnieTokenizer, TokenizerSettings

    tokenizer = ErnieTokenizer.from_files(example_model / "vocab.txt", TokenizerSettings(max_seq_len=16))
    spaces = "打开" + " " * 5000 + "空调"  # two tokens, but past the character bound
    batch = tokenizer.encode(["打开空调", spaces])
    assert batch.truncated.tolist() == [False, True]


@pytest.mark.parametrize("text, blank", [("", True), ("\x00", True), (" \t\n\x01\x7f\u200b", True),
                                         ("\x00a", False), ("打开", False)])
def test_blank_means_nothing_to_tokenize(text, blank):
    assert is_blank(text) is blank


def test_backends_run_only_from_a_private_directory(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    check_private(private)
    private.chmod(0o777)
    with pytest.raises(ServerError, match="nobody else can write"):
        check_private(private)
    private.chmod(0o700)
    os.chown(private, 65534, 65534)  # another user's (the tests run as root in CI)
    if os.getuid() == 0:
        with pytest.raises(ServerError, match="owned by uid 65534"):
            check_private(private)
    link = tmp_path / "link"
    link.symlink_to(private)
    with pytest.raises(ServerError):
        check_private(link)


def test_a_planted_backends_directory_is_refused(tmp_path, monkeypatch):
    from builder.serving.triton_server import prepare_backends

    root = tmp_path / "cache"
    planted = root / "backends-x" / "python"
    planted.mkdir(parents=True)
    (planted / "triton_python_backend_stub").write_text("#!/bin/sh\necho planted\n")
    planted.chmod(0o777)
    root.chmod(0o700)
    with pytest.raises(ServerError, match="nobody else can write"):
        prepare_backends(root / "backends-x")


def test_triton_binds_loopback_and_restricts_admin_apis_by_default(tmp_path):
    command = TritonServer(tmp_path, admin_key="k").command()
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
            "--model-control-mode=explicit", "--load-model=*"} <= set(command)
    restricted = f"{','.join(RESTRICTED_APIS)}:ernie-admin-key=k"
    assert f"--http-restricted-api={restricted}" in command
    assert f"--grpc-restricted-protocol={restricted}" in command


def test_deploy_restricts_the_same_apis_and_probes_by_inference():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    command = shlex.split(re.search(r'^CMD \["/bin/sh", "-c", "(.*)"\]$', dockerfile.replace("\\\n", ""),
                                    re.M).group(1))
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        (value,) = [c.split("=", 1)[1] for c in command if c.startswith(flag + "=")]
        assert value.split(":")[0].split(",") == list(RESTRICTED_APIS)
    assert "--model-control-mode=explicit" in command
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "base" / "deployment.yaml").read_text()))
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["exec"]["command"][:2] == ["python3", "/opt/ernie/health.py"]
    assert "COPY serving_core/health.py /opt/ernie/health.py" in dockerfile


def test_the_probe_sends_one_text_per_input():
    config = {"max_batch_size": 8, "input": [{"name": "QUESTION", "dims": ["1"]}, {"name": "CONTEXT", "dims": [1]}]}
    body = probe_body(config)
    assert [(i["name"], i["shape"], i["datatype"]) for i in body["inputs"]] == [
        ("QUESTION", [1, 1], "BYTES"), ("CONTEXT", [1, 1], "BYTES")]
