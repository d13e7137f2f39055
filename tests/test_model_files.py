"""Model files from anywhere run no code: hostile pickles are refused before they run, on every
command that reads a model; the real files paddle.save and save_pretrained write still load; the
readers of user files check what a file declares against the file (exit 2 naming it, never a
traceback); and a fuzzed intake (tests/fuzz_intake.py, hypothesis) finds no exit 4, hang, crash or
runaway memory. Commands run in-process through `builder.cli.main`, as the user's shell would
call them, so their exit codes and messages are the CLI's own."""
from __future__ import annotations

import copyreg
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from builder.cli import main
from builder.source.pickled_weights import check_pickle, load_pickled_weights

from .model_dirs import make_checkpoint

pytestmark = pytest.mark.models  # PaddleNLP writes the real files

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("files") / "checkpoint", safe_serialization=False)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("files") / "sharded", safe_serialization=False,
                           max_shard_size="40KB")


def copy_of(directory: Path, target: Path) -> Path:
    shutil.copytree(directory, target)
    return target


class Runs:
    """A gadget: unpickling it runs `call(*args)`, which would create `marker`."""

    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


class ReducesEx:
    """A gadget through __reduce_ex__ and copyreg."""

    def __reduce_ex__(self, protocol):
        return copyreg._reconstructor, (ReducesEx, object, None)


def gadgets(marker: Path) -> dict[str, object]:
    return {"os.system": Runs(os.system, (f"touch {marker}",)),
            "subprocess": Runs(subprocess.check_call, (["touch", str(marker)],)),
            "exec": Runs(exec, (f"open({str(marker)!r}, 'w').close()",)),
            "numpy runstring": Runs(np.testing._private.utils.runstring,
                                    (f"open({str(marker)!r}, 'w').close()", {})),
            "eval": Runs(eval, (f"open({str(marker)!r}, 'w').close()",)),
            "copyreg": ReducesEx()}


def poison(weights: Path, gadget, protocol: int = 4, depth: int = 0) -> None:
    """Add `gadget` to a real .pdparams, nested `depth` containers deep."""
    with open(weights, "rb") as f:
        state = pickle.load(f)  # the file the test itself just wrote: trusted
    for _ in range(depth):
        gadget = [{"inner": gadget}]
    state["zz_extra"] = gadget
    weights.write_bytes(pickle.dumps(state, protocol=protocol))


def run_cli(caplog, *argv: str) -> tuple[int, str]:
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        code = main([str(a) for a in argv])
    return code, "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


@pytest.mark.parametrize("name", ["os.system", "subprocess", "exec", "numpy runstring", "eval", "copyreg"])
def test_a_gadget_in_the_weights_is_refused_by_build_before_it_runs(checkpoint, tmp_path, caplog, name):
    marker = tmp_path / "ran"
    hostile = copy_of(checkpoint, tmp_path / "hostile")
    poison(hostile / "model_state.pdparams", gadgets(marker)[name])
    code, error = run_cli(caplog, "build", "--task", "seq_cls", "--model", hostile, "--output", tmp_path / "out",
                          "--runtime", "paddle")
    assert code == 2 and not marker.exists() and not (tmp_path / "out").exists()
    assert str(hostile / "model_state.pdparams") in error and "refused without running it" in error
    assert "safe_serialization=True" in error
    assert {"os.system": "posix.system", "subprocess": "subprocess.check_call", "exec": "builtins.exec",
            "numpy runstring": "numpy.testing._private.utils.runstring", "eval": "builtins.eval with arguments",
            "copyreg": "copyreg._reconstructor"}[name] in error


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_gadgets_at_any_depth_and_protocol_are_refused(checkpoint, tmp_path, protocol):
    from serving_core.errors import UserError

    marker = tmp_path / "ran"
    for depth in (0, 3):
        weights = tmp_path / f"model_{depth}.pdparams"
        shutil.copy(checkpoint / "model_state.pdparams", weights)
        poison(weights, gadgets(marker)["os.system"], protocol, depth)
        with pytest.raises(UserError, match="refused without running it"):
            load_pickled_weights(weights)
        assert not marker.exists()


def test_every_command_that_reads_the_model_refuses_it(checkpoint, tmp_path, caplog):
    good = tmp_path / "repo"
    assert run_cli(caplog, "build", "--task", "seq_cls", "--model", checkpoint, "--output", good, "--runtime",
                   "paddle")[0] == 0
    marker = tmp_path / "ran"
    hostile = copy_of(checkpoint, tmp_path / "hostile")
    poison(hostile / "model_state.pdparams", gadgets(marker)["os.system"])
    commands = {"build": ["build", "--task", "seq_cls", "--model", hostile, "--output", tmp_path / "out"],
                "verify": ["verify", good, "--model", hostile],
                "inspect": ["inspect", hostile],
                "bench": ["bench", "--task", "seq_cls", "--model", hostile]}
    for command, argv in commands.items():
        code, error = run_cli(caplog, *argv)
        assert code == 2 and "posix.system" in error and str(hostile) in error, (command, code, error)
    assert not marker.exists()


def test_a_hostile_shard_is_refused(sharded, tmp_path, caplog):
    marker = tmp_path / "ran"
    hostile = copy_of(sharded, tmp_path / "hostile")
    shard = sorted(hostile.glob("model_state-*.pdparams"))[-1]
    poison(shard, gadgets(marker)["exec"])
    code, error = run_cli(caplog, "build", "--task", "seq_cls", "--model", hostile, "--output", tmp_path / "out",
                          "--runtime", "paddle")
    assert code == 2 and str(shard) in error and "builtins.exec" in error and not marker.exists()


def test_a_shard_index_cannot_point_outside_the_model(sharded, tmp_path, caplog):
    moved = copy_of(sharded, tmp_path / "moved")
    index_file = moved / "model_state.pdparams.index.json"
    index = json.loads(index_file.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "../elsewhere.pdparams"
    index_file.write_text(json.dumps(index))
    code, error = run_cli(caplog, "inspect", moved)
    assert code == 2 and "'../elsewhere.pdparams', which is not a file beside the index" in error


def test_real_pickles_still_load_as_paddle_reads_them(checkpoint, sharded, tmp_path):
    """Paddle 2.6's (committed fixture) and PaddleNLP 3's files, plain and sharded, protocols 2-4: the
    allow-list rebuilds exactly what paddle.load gives (paddle.load runs only on these trusted files)."""
    import paddle

    files = [FIXTURES / "paddle2" / "qat_seq_cls" / "fp32" / "model_state.pdparams",
             checkpoint / "model_state.pdparams", *sorted(sharded.glob("model_state-*.pdparams"))]
    state = paddle.load(str(checkpoint / "model_state.pdparams"))
    for protocol in (2, 3):
        paddle.save(state, str(tmp_path / f"p{protocol}.pdparams"), protocol=protocol)
        files.append(tmp_path / f"p{protocol}.pdparams")
    tensors = paddle.to_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    paddle.save({"w": tensors, "b": paddle.to_tensor([1.0])}, str(tmp_path / "tensors.pdparams"))  # (name, array)
    files.append(tmp_path / "tensors.pdparams")
    for path in files:
        ours = load_pickled_weights(path)
        theirs = {k: np.asarray(v) for k, v in paddle.load(str(path), return_numpy=True).items()
                  if k != "StructuredToParameterName@@"}
        assert ours.keys() == theirs.keys() and ours, path
        assert all(np.array_equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype for k in ours), path
        assert check_pickle(path).refused is None


def test_inspect_reports_each_pickle_and_a_stray_one_is_not_read(checkpoint, tmp_path, caplog, capsys):
    directory = copy_of(checkpoint, tmp_path / "stray")
    marker = tmp_path / "ran"
    (directory / "optimizer.pdopt").write_bytes(pickle.dumps({"x": gadgets(marker)["os.system"]}, protocol=2))
    code, _ = run_cli(caplog, "inspect", directory)
    assert code == 0 and not marker.exists()
    report = {Path(p["file"]).name: p for p in json.loads(capsys.readouterr().out)["pickles"]}
    assert report["model_state.pdparams"]["passes_allow_list"] and report["model_state.pdparams"]["read_by_build"]
    assert not report["optimizer.pdopt"]["passes_allow_list"] and not report["optimizer.pdopt"]["read_by_build"]
    assert "posix.system" in report["optimizer.pdopt"]["globals"]
    assert run_cli(caplog, "build", "--task", "seq_cls", "--model", directory, "--output", tmp_path / "out",
                   "--runtime", "paddle")[0] == 0


# Bounded readers: what a file declares is checked against the file before anything is allocated.
def _safetensors_checkpoint(checkpoint: Path, target: Path) -> Path:
    from safetensors.numpy import save_file

    directory = copy_of(checkpoint, target)
    save_file(load_pickled_weights(directory / "model_state.pdparams"), str(directory / "model.safetensors"),
              metadata={"format": "np"})
    (directory / "model_state.pdparams").unlink()
    return directory


def _edit_json(path: Path, **values) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


@pytest.mark.parametrize("case, expected", [
    ("header length", "its safetensors header claims 4611686018427387904 bytes"),
    ("offsets", "do not fit the file"),
    ("config too large", "describes a model of at least"),
    ("config type", "hidden_size is 'wide'"),
    ("deep json", "invalid JSON (RecursionError"),
    ("huge vocab", "MiB; no real one is over 64 MiB"),
    ("tokenizer config", "unk_token is \"['x']\"; a special token is a non-empty string"),
    ("label bytes", "is not UTF-8 text"),
])
def test_bounded_readers_refuse_by_name(checkpoint, tmp_path, caplog, case, expected):
    directory = _safetensors_checkpoint(checkpoint, tmp_path / "model")
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    named = {"header length": weights, "offsets": weights, "config too large": directory / "config.json",
             "config type": directory / "config.json", "deep json": directory / "config.json",
             "huge vocab": directory / "vocab.txt", "tokenizer config": directory / "special_tokens_map.json",
             "label bytes": directory / "label.txt"}[case]
    if case == "header length":
        data[:8] = (2**62).to_bytes(8, "little")
        weights.write_bytes(bytes(data))
    elif case == "offsets":
        header_length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_length])
        name = next(k for k in header if k != "__metadata__")
        header[name]["data_offsets"][1] += 10**9
        text = json.dumps(header).encode()
        weights.write_bytes(len(text).to_bytes(8, "little") + text + bytes(data[8 + header_length:]))
    elif case == "config too large":
        _edit_json(named, hidden_size=4096, num_hidden_layers=48, intermediate_size=16384)
    elif case == "config type":
        _edit_json(named, hidden_size="wide")
    elif case == "deep json":
        named.write_text("[" * 100_000 + "]" * 100_000)
    elif case == "huge vocab":
        with open(named, "r+b") as f:
            f.truncate(65 * 2**20)  # sparse: no disk used
    elif case == "tokenizer config":
        _edit_json(named, unk_token=["x"])
    elif case == "label bytes":
        named.write_bytes(b"\xff\xfe\x00bad\n")
    code, error = run_cli(caplog, "build", "--task", "seq_cls", "--model", directory, "--output", tmp_path / "out",
                          "--runtime", "paddle")
    assert code == 2 and str(named) in error and expected in error, error
    assert not (tmp_path / "out").exists()


def test_params_stream_and_onnx_external_data_are_checked(static_export, tmp_path, caplog):
    """A .pdiparams whose tensor claims more bytes than the file has, and an ONNX program whose
    external data points outside its directory, are refused before Paddle or ONNX Runtime reads them."""
    import onnx

    from builder.source.user_files import check_params_stream

    assert check_params_stream(static_export / "inference.pdiparams") > 0  # a real Paddle 3 export walks through
    inflated = copy_of(static_export, tmp_path / "inflated")
    params = bytearray((inflated / "inference.pdiparams").read_bytes())
    desc_size = int.from_bytes(params[16:20], "little", signed=True)
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.VarType.TensorDesc()
    desc.ParseFromString(bytes(params[20:20 + desc_size]))
    desc.dims[0] = 2**40
    text = desc.SerializeToString()
    params[16:20 + desc_size] = len(text).to_bytes(4, "little") + text
    (inflated / "inference.pdiparams").write_bytes(bytes(params))
    code, error = run_cli(caplog, "inspect", inflated)
    assert code == 2 and str(inflated / "inference.pdiparams") in error and "needs" in error, error

    outside = tmp_path / "onnx"
    outside.mkdir()
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input_ids"], ["out"])], "g",
        [onnx.helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, [None, None])],
        [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.INT64, [None, None])],
        [onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [1], [0.0])])
    model = onnx.helper.make_model(graph)
    tensor = model.graph.initializer[0]
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    onnx.save(model, str(outside / "model.onnx"))
    shutil.copy(static_export / "vocab.txt", outside / "vocab.txt")
    code, error = run_cli(caplog, "inspect", outside)
    assert code == 2 and "'../../etc/passwd', which is not a file inside the model's directory" in error, error


def test_fuzzed_intake_finds_no_crash_hang_or_traceback(tmp_path):
    """The short deterministic run of tests/fuzz_intake.py (its docstring gives the longer campaign):
    a child process mutates each file of valid model directories and runs `inspect` and `build` on
    each, so that a crash would show as the case that killed it, not as a dead test run."""
    done = subprocess.run([sys.executable, "-m", "tests.fuzz_intake", "--inspect-cases", "60", "--build-cases", "8",
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=1500,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["cases"] == 68 and summary["failures"] == [], summary
    assert summary["refused"] > 0 and summary["accepted"] > 0  # both outcomes were reached
