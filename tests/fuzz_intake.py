"""Fuzz the builder's intake: mutate each file of valid model directories, run `builder inspect`
and `builder build` on each (in this process, through `builder.cli.main`), and record any exit
other than 0 or 2, an error that does not name the model's directory, a build that leaves output
behind, a pickle gadget that ran, a case over its time limit, or memory far beyond the model's.

Valid directories, made by the real tools: a PaddleNLP checkpoint with pickled weights, one with
safetensors, its Paddle 3 static export, Paddle 2.6's export (committed fixture) and a MindSpore
student (committed fixture). Mutations (hypothesis): bytes flipped, the file truncated, a length
field inflated, JSON values of the wrong type or nested too deep, text with awkward lines, yaml
values of the wrong type, pickles with gadgets at any depth and protocol 0-5.

The suite runs a short deterministic campaign (tests/test_model_files.py). A longer one:

    .venv/bin/python -m tests.fuzz_intake --inspect-cases 3000 --build-cases 200 --workdir /tmp/fuzz --seed 7

Each case prints a line before it starts, so a crash or a hang shows which case caused it; the
last line is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import shutil
import signal
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings, strategies as st

from .model_dirs import copy_fixture, make_checkpoint, make_static_export

CASE_SECONDS = 180  # far beyond any case here: only a hang reaches it
MEMORY_BOUND = 2 * 2**30  # peak RSS above the process's before the case
VALUES = [None, -1, 0, 2**62, 2**31, "x", "", [], {}, [1, [2, [3]]], 1.5, True, {"content": 3}]
LINES = ["", " ", "##", "[UNK]", "[PAD]", "\ufeff", "\x00\x01", "a b c", "x" * 5000, "打" * 300, "\udcff"]


class Gadget:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def make_bases(root: Path) -> dict[str, Path]:
    checkpoint = make_checkpoint(root / "checkpoint", safe_serialization=False)
    return {"checkpoint": checkpoint,
            "safetensors": make_checkpoint(root / "safetensors", safe_serialization=True),
            "static": make_static_export(checkpoint, root / "static"),
            "paddle2": copy_fixture("paddle2/multi_class/export", root / "paddle2",
                                    {"vocab.txt": "paddle2/tokenizer/vocab.txt", "label.txt": "paddle2/seq_labels.txt",
                                     "tokenizer_config.json": "paddle2/tokenizer/tokenizer_config.json"}),
            "mindspore": copy_fixture("mindspore/student", root / "mindspore")}


def _mutate_bytes(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "inflate"]))
    if not data or kind == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    out = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
        return bytes(out)
    width = draw(st.sampled_from([4, 8]))
    at = draw(st.integers(0, max(len(out) - width, 0)))
    value = draw(st.sampled_from([2**31 - 1, 2**32 - 1, 2**62, 2**63 - 1, 2**40]))
    out[at: at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
    return bytes(out)


def _mutate_json(draw, data: bytes) -> bytes:
    if draw(st.booleans()):
        return ("[" * 50_000 + "]" * 50_000).encode() if draw(st.booleans()) else _mutate_bytes(draw, data)
    try:
        document = json.loads(data)
    except ValueError:
        return _mutate_bytes(draw, data)
    node, path = document, []
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    if not path:
        return json.dumps(draw(st.sampled_from(VALUES))).encode()
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = draw(st.sampled_from(VALUES))
    return json.dumps(document).encode()


def _mutate_text(draw, data: bytes) -> bytes:
    if draw(st.booleans()):
        return _mutate_bytes(draw, data)
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    for _ in range(draw(st.integers(1, 4))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(LINES)))
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def _mutate_yaml(draw, data: bytes) -> bytes:
    if draw(st.booleans()):
        return _mutate_text(draw, data)
    text = data.decode("utf-8")
    key = draw(st.sampled_from(["hidden_size", "num_attention_heads", "num_hidden_layers", "hidden_act",
                                "td_student_net_cfg"]))
    value = draw(st.sampled_from(["[1, 2]", "'wide'", "-3", "{a: 1}", "&a [*a]", "99999999999", "~", "1.5"]))
    lines = [f"{line.split(':')[0]}: {value}" if line.strip().startswith(key + ":") else line
             for line in text.splitlines()]
    return "\n".join(lines).encode()


def _mutate_pickle(draw, data: bytes, marker: Path) -> bytes:
    if draw(st.booleans()):
        return _mutate_bytes(draw, data)
    state = pickle.loads(data)  # the fuzzer's own valid base file: trusted
    gadget: object = Gadget(marker)
    for _ in range(draw(st.integers(0, 4))):
        gadget = draw(st.sampled_from([lambda g: [g], lambda g: {"k": g}, lambda g: (g, 1)]))(gadget)
    state[draw(st.sampled_from(sorted(state)))] = gadget
    return pickle.dumps(state, protocol=draw(st.integers(0, 5)))


def mutate(draw, path: Path, marker: Path) -> str:
    """Mutate the file in place; say how."""
    data = path.read_bytes()
    if path.suffix == ".pdparams":
        kind, new = "pickle", _mutate_pickle(draw, data, marker)
    elif path.suffix == ".json":
        kind, new = "json", _mutate_json(draw, data)
    elif path.suffix in (".txt", ".yaml"):
        kind, new = "text", (_mutate_yaml if path.suffix == ".yaml" else _mutate_text)(draw, data)
    else:
        kind, new = "bytes", _mutate_bytes(draw, data)
    path.write_bytes(new)
    return kind


def _reset_peak() -> int:
    """Reset the kernel's peak-RSS mark for this process; return the RSS now (bytes)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        where = ""
        if record.exc_info:  # an unexpected exception: where it was raised
            import traceback

            where = " " + " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in
                                      reversed(traceback.extract_tb(record.exc_info[2])[-3:]))
            where += f" {record.exc_info[0].__name__}: {str(record.exc_info[1])[:200]}"
        self.messages.append(record.getMessage() + where)


def _timeout(signum, frame):
    raise TimeoutError(f"a case ran past {CASE_SECONDS} s")


def run_case(number: int, command: str, base: Path, file_name: str, draw, workdir: Path, errors: _Errors) -> dict:
    from builder.cli import main

    case_dir = workdir / f"case{number}"
    shutil.rmtree(case_dir, ignore_errors=True)
    model = case_dir / base.name
    shutil.copytree(base, model)
    marker = case_dir / "gadget_ran"
    how = mutate(draw, model / file_name, marker)
    output = case_dir / "out"
    argv = ["inspect", str(model)] if command == "inspect" else \
        ["build", "--task", "seq_cls", "--model", str(model), "--output", str(output), "--runtime", "paddle"]
    print(json.dumps({"case": number, "command": command, "base": base.name, "file": file_name, "mutation": how}),
          flush=True)
    errors.messages.clear()
    before = _reset_peak()
    signal.alarm(CASE_SECONDS)
    try:
        code = main(argv)
    except TimeoutError as exc:
        code = f"hang: {exc}"
    finally:
        signal.alarm(0)
    peak = _status("VmHWM") - before
    problems = []
    if code not in (0, 2):
        problems.append(f"exit {code}: {' | '.join(errors.messages)[-600:]}")
    if code == 2 and not any(str(model) in m for m in errors.messages):
        problems.append(f"the error does not name the model's files: {errors.messages[-1:]}")
    if code == 2 and output.exists():
        problems.append("a failed build left output behind")
    if marker.exists():
        problems.append("a pickle gadget ran")
    if peak > MEMORY_BOUND:
        problems.append(f"peak memory {peak / 2**20:.0f} MiB above the process's")
    shutil.rmtree(case_dir, ignore_errors=True)
    return {"case": number, "command": command, "base": base.name, "file": file_name, "mutation": how,
            "exit": code, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inspect-cases", type=int, default=60)
    parser.add_argument("--build-cases", type=int, default=8)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="0: hypothesis's derandomized order")
    args = parser.parse_args(argv)
    from builder.quiet import quiet_frameworks

    quiet_frameworks()
    logging.basicConfig(level=logging.CRITICAL)
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    signal.signal(signal.SIGALRM, _timeout)
    shutil.rmtree(args.workdir / "bases", ignore_errors=True)
    bases = make_bases(args.workdir / "bases")
    files = [(name, path.name) for name, base in bases.items() for path in sorted(base.iterdir())
             if path.is_file() and path.name != "data.txt"]
    results: list[dict] = []
    started = time.monotonic()

    def campaign(command: str, cases: int) -> None:
        if cases <= 0:
            return

        @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
                  derandomize=args.seed == 0, suppress_health_check=list(HealthCheck))
        @given(st.data())
        def one(data):
            base, file_name = data.draw(st.sampled_from(files))
            results.append(run_case(len(results), command, bases[base], file_name, data.draw, args.workdir, errors))

        (seed(args.seed + (command == "build"))(one) if args.seed else one)()

    campaign("inspect", args.inspect_cases)
    campaign("build", args.build_cases)
    failures = [r for r in results if r["problems"]]
    summary = {"cases": len(results), "refused": sum(r["exit"] == 2 for r in results),
               "accepted": sum(r["exit"] == 0 for r in results), "failures": failures,
               "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
