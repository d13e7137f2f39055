"""A live tritonserver's admin API (load, unload, index), reached with the key `builder serve` set.

Triton's model-repository API is restricted to requests carrying the header ADMIN_HEADER with
$ERNIE_SERVING_ADMIN_KEY (builder.serving.triton_server), so every command that changes a live
server needs the key and says so when it is missing.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from serving_core.drain import unload_and_wait
from serving_core.errors import ServerError, UserError
from serving_core.health import ADMIN_HEADER, call_json, index_states

ADMIN_KEY_ENV = "ERNIE_SERVING_ADMIN_KEY"


@dataclass(frozen=True)
class LiveServer:
    """The server at `url` (HOST:PORT of its HTTP endpoint), with its admin key."""

    url: str
    admin_key: str
    timeout_s: float = 600.0  # a load of a large model step

    @classmethod
    def from_environment(cls, url: str) -> "LiveServer":
        key = os.environ.get(ADMIN_KEY_ENV)
        if not key:
            raise UserError(f"the server's admin API needs its key: set {ADMIN_KEY_ENV} to the key `builder serve` "
                            "was started with (the same variable)")
        return cls(url, key)

    @property
    def base(self) -> str:
        return self.url if self.url.startswith(("http://", "https://")) else f"http://{self.url}"

    @property
    def headers(self) -> dict[str, str]:
        return {ADMIN_HEADER: self.admin_key}

    def _call(self, path: str, body: dict | None, timeout: float | None = None):
        try:
            return call_json(f"{self.base}{path}", body, self.headers, timeout or self.timeout_s)
        except OSError as exc:
            raise ServerError(f"cannot reach the server at {self.url}: {exc}") from exc

    def states(self) -> dict[str, str]:
        """Every model in the repository -> its state (READY, LOADING, UNLOADING, UNAVAILABLE): of a
        model with several versions in the index, the liveliest."""
        return index_states(self._call("/v2/repository/index", {}, 30.0))

    def load(self, name: str, config: mc.ModelConfig | None = None) -> None:
        """Load `name` (an ensemble loads its steps); with `config`, instead of its config.pbtxt.
        Raises RuntimeError with Triton's reason when it does not load."""
        body = {}
        if config is not None:
            body = {"parameters": {"config": json.dumps(json_format.MessageToDict(config))}}
        self._call(f"/v2/repository/models/{name}/load", body)

    def config(self, name: str) -> dict:
        return self._call(f"/v2/models/{name}/config", None, 30.0)

    def infer(self, name: str, body: dict) -> dict:
        return self._call(f"/v2/models/{name}/infer", body, 120.0)

    def unload(self, names: list[str], grace_s: float) -> list[str]:
        """Unload `names` and wait until each has answered what it holds; those still answering
        after `grace_s`."""
        present = set(self.states())
        names = [n for n in names if n in present]
        try:
            return unload_and_wait(self.base, self.headers, names, time.monotonic() + grace_s)
        except OSError as exc:
            raise ServerError(f"cannot reach the server at {self.url}: {exc}") from exc
