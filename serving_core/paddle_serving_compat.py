"""The two shims Paddle Serving 0.9 needs on Python 3.11, in one place.

Call `prepare()` before anything imports protobuf or paddle_serving_*: its generated
*_pb2 modules predate protobuf 4 and load only with protobuf's pure-Python implementation,
and its httpclient uses `collections.Iterable` (removed in Python 3.10).

Scripts written for Paddle Serving (PaddleNLP's published clients) do not call it: setup
(scripts/install_paddle_serving.py) puts a `.pth` file into the environment that runs
`install_hook()` at start-up, so the first `import paddle_serving_*` calls `prepare()`.
"""
from __future__ import annotations

import collections
import collections.abc
import importlib.abc
import os
import sys

PACKAGES = ("paddle_serving_server", "paddle_serving_client", "paddle_serving_app")


def prepare() -> None:
    if "google.protobuf" in sys.modules and os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION") != "python":
        from google.protobuf.internal import api_implementation

        if api_implementation.Type() != "python":
            raise RuntimeError("protobuf was imported before serving_core.paddle_serving_compat.prepare(); "
                               "Paddle Serving needs PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python set first")
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    if not hasattr(collections, "Iterable"):
        collections.Iterable = collections.abc.Iterable


class _PrepareOnImport(importlib.abc.MetaPathFinder):
    """Calls `prepare()` when a Paddle Serving package is first imported, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in PACKAGES:
            sys.meta_path.remove(self)
            prepare()
        return None  # the regular finders import it


def install_hook() -> None:
    """Have the first import of a Paddle Serving package prepare the interpreter (idempotent)."""
    if not any(isinstance(finder, _PrepareOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PrepareOnImport())
