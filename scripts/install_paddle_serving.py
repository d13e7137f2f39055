"""Install Paddle Serving 0.9.0 (its last release) into this Python 3.11 environment.

Why this is not a plain `pip install`:
- paddle-serving-server / -app 0.9.0 pin grpcio<=1.33.2, flask<2, click==7.1.2... none of
  which install on 3.11: they go in with --no-deps (what they really import is already here,
  plus func-timeout).
- paddle-serving-client 0.9.0 exists only as a cp39 wheel (pip on 3.11 would pick 0.2.1).
  Its compiled brpc client (serving_client.so) cannot load on 3.11 and is only imported by the
  brpc Client; the pipeline needs the pure-Python rest, which is unpacked here.
Runtime shims (protobuf's Python implementation for the old generated *_pb2 modules, a
`collections.Iterable` alias) live in serving_core/paddle_serving_compat.py. The `.pth` file
written here (HOOK) applies them when a script first imports paddle_serving_*, so scripts
written for Paddle Serving, PaddleNLP's published clients among them, run unchanged.
"""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.9.0"
HOOK = "ernie_serving_paddle_serving.pth"
HOOK_LINE = "import serving_core.paddle_serving_compat as compat; compat.install_hook()\n"


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    (site / HOOK).write_text(HOOK_LINE, encoding="utf-8")
    if (site / "paddle_serving_client" / "pipeline").is_dir() and (site / "paddle_serving_server").is_dir():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        pip("install", "--quiet", "--no-deps", f"paddle-serving-server=={VERSION}", f"paddle-serving-app=={VERSION}",
            "func-timeout==4.3.5")
        pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.9",
            "--platform", "manylinux1_x86_64", "-d", tmp, f"paddle-serving-client=={VERSION}")
        (wheel,) = Path(tmp).glob("paddle_serving_client-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if not m.endswith(".so")]
            archive.extractall(site, members)
    print(f"paddle serving {VERSION}: server, app and the client's Python parts installed in {site}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
