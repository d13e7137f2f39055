"""The two shims Paddle Serving 0.9 needs on Python 3.11, in one place.

Call `prepare()` before anything imports protobuf or paddle_serving_*: its generated
*_pb2 modules predate protobuf 4 and load only with protobuf's pure-Python implementation,
and its httpclient uses `collections.Iterable` (removed in Python 3.10).
"""
from __future__ import annotations

import collections
import collections.abc
import os
import sys


def prepare() -> None:
    if "google.protobuf" in sys.modules and os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION") != "python":
        from google.protobuf.internal import api_implementation

        if api_implementation.Type() != "python":
            raise RuntimeError("protobuf was imported before serving_core.paddle_serving_compat.prepare(); "
                               "Paddle Serving needs PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python set first")
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    if not hasattr(collections, "Iterable"):
        collections.Iterable = collections.abc.Iterable
