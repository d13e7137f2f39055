"""Every command the README and docs/ show is parsed by the command it names: `builder ...` by
builder's own parser, `python -m MODULE ...` by that module's `main`, `bash scripts/...` exists.
(Docker and kubectl commands cannot run here; tests/test_deploy.py and test_kubernetes.py check
the files they use.) The README also stays short."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHOWN = re.compile(r"^ {4,}((?:\.venv/bin/)?(?:builder|python3? -m|bash scripts/)\S*.*)$")


def shown_commands() -> list[tuple[str, list[str]]]:
    """(page, argv) of each command in an indented block, continuation lines joined, comments cut."""
    commands = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            match = SHOWN.match(lines[index])
            index += 1
            if not match:
                continue
            text = match.group(1)
            while text.rstrip().endswith("\\") and index < len(lines):
                text = text.rstrip()[:-1] + " " + lines[index].strip()
                index += 1
            argv = shlex.split(text, comments=True)
            commands.append((page.relative_to(ROOT).as_posix(), argv))
    return commands


# Runs in a fresh interpreter: Paddle Serving's client needs protobuf's Python implementation
# chosen before anything imports protobuf. Each main() parses its arguments and stops there.
PARSE_ONLY = r"""
import argparse, importlib, json, sys
from serving_core.paddle_serving_compat import prepare
prepare()

class Parsed(Exception):
    pass

def parse_only(self, args=None, namespace=None):
    parsed, extra = self.parse_known_args(args, namespace)
    if extra:
        self.error(f"unrecognized arguments: {' '.join(extra)}")
    raise Parsed()

argparse.ArgumentParser.parse_args = parse_only
failures = []
for page, module, argv in json.loads(sys.stdin.read()):
    try:
        importlib.import_module(module).main(argv)
        failures.append(f"{page}: {module} {argv}: ran instead of parsing")
    except Parsed:
        pass
    except SystemExit as exc:
        failures.append(f"{page}: {module} {argv}: refused (exit {exc.code})")
print(json.dumps(failures))
"""


def _module_and_argv(argv: list[str]) -> tuple[str, list[str]]:
    if Path(argv[0]).name == "builder":
        return "builder.cli", argv[1:]
    return argv[2], argv[3:]  # python -m MODULE ARGS


def test_the_docs_show_commands_of_every_kind():
    commands = shown_commands()
    kinds = {Path(argv[0]).name if Path(argv[0]).name != "python" else argv[2].split(".")[0] for _, argv in commands}
    assert {"builder", "clients", "benchmarks", "bash"} <= kinds, kinds
    assert len(commands) >= 20


def test_every_shown_command_parses():
    commands = shown_commands()
    scripts = [(page, argv) for page, argv in commands if argv[0] == "bash"]
    assert all((ROOT / argv[1]).is_file() for _, argv in scripts), scripts
    calls = [(page, *_module_and_argv(argv)) for page, argv in commands if argv[0] != "bash"]
    done = subprocess.run([sys.executable, "-c", PARSE_ONLY], input=json.dumps(calls), capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
