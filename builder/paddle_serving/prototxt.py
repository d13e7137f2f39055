"""Write serving_server / serving_client prototxt through Paddle Serving's own messages.

Runs as its own process (`python -m builder.paddle_serving.prototxt SPEC.json`): Paddle
Serving's generated general_model_config_pb2 only loads with protobuf's pure-Python
implementation, which cannot be switched on in a process (the builder) that has already
loaded tritonclient's protobuf. SPEC.json: {"feeds": [...], "fetches": [...], "server_dir": ...,
"client_dir": ...}, tensors as {"name", "dtype", "shape"}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from serving_core.paddle_serving_compat import prepare

# general_model_config.proto feed_type / fetch_type codes.
_TYPE_CODES = {"int64": 0, "float32": 1, "int32": 2, "float16": 3, "bool": 9}


def main(spec_path: str) -> int:
    prepare()
    from google.protobuf import text_format
    from paddle_serving_server.proto import general_model_config_pb2 as gmc

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    config = gmc.GeneralModelConfig()
    for tensor in spec["feeds"]:
        config.feed_var.append(gmc.FeedVar(name=tensor["name"], alias_name=tensor["name"], is_lod_tensor=False,
                                           feed_type=_TYPE_CODES[tensor["dtype"]], shape=tensor["shape"]))
    for tensor in spec["fetches"]:
        config.fetch_var.append(gmc.FetchVar(name=tensor["name"], alias_name=tensor["name"], is_lod_tensor=False,
                                             fetch_type=_TYPE_CODES[tensor["dtype"]], shape=tensor["shape"]))
    text, binary = text_format.MessageToString(config), config.SerializeToString()
    for directory, stem in ((spec["server_dir"], "serving_server_conf"), (spec["client_dir"], "serving_client_conf")):
        Path(directory, f"{stem}.prototxt").write_text(text, encoding="utf-8")
        Path(directory, f"{stem}.stream.prototxt").write_bytes(binary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
