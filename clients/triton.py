"""What every task client needs: connect, read the ensemble's metadata, run batches."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from serving_core import interface


class ClientError(RuntimeError):
    """The server refused a request or a model is not what the client expects."""


@dataclass(frozen=True)
class EnsembleInfo:
    """What a client learns from the ensemble's config instead of hard-coding it."""

    name: str
    task: str
    max_batch_size: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    parameters: dict[str, str]

    def parameter(self, key: str, default=None):
        return json.loads(self.parameters[key]) if key in self.parameters else default


def connect(url: str) -> grpcclient.InferenceServerClient:
    client = grpcclient.InferenceServerClient(url)
    try:
        if not client.is_server_live():
            raise ClientError(f"the server at {url} is not live")
    except InferenceServerException as exc:
        raise ClientError(f"cannot reach a Triton server at {url}: {exc.message()}") from exc
    return client


def ensemble_info(client: grpcclient.InferenceServerClient, model: str) -> EnsembleInfo:
    try:
        config = client.get_model_config(model, as_json=True)["config"]
    except InferenceServerException as exc:
        raise ClientError(f"model {model!r}: {exc.message()}") from exc
    parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    return EnsembleInfo(model, parameters.get(interface.PARAM_TASK, ""), int(config.get("max_batch_size", 0)),
                        tuple(i["name"] for i in config["input"]), tuple(o["name"] for o in config["output"]),
                        parameters)


def find_model(client: grpcclient.InferenceServerClient, task: str) -> str:
    """The one ready ensemble serving `task` (for when the user gives no --model)."""
    names = [m["name"] for m in client.get_model_repository_index(as_json=True).get("models", [])
             if m.get("state") == "READY"]
    matches = [n for n in names if ensemble_info(client, n).task == task]
    if len(matches) != 1:
        raise ClientError(f"{len(matches)} ready {task} models on the server ({', '.join(matches) or 'none'}); "
                          "pass --model NAME")
    return matches[0]


def bytes_input(name: str, texts: list[str]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1))
    return tensor


def infer(client: grpcclient.InferenceServerClient, model: str, inputs: list, outputs: list[str],
          timeout_s: float | None = None) -> dict[str, np.ndarray]:
    requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
    try:
        result = client.infer(model, inputs, outputs=requested, client_timeout=timeout_s)
    except InferenceServerException as exc:
        raise ClientError(exc.message()) from exc
    return {name: result.as_numpy(name) for name in outputs}


def chunks(count: int, size: int):
    """Index ranges of at most `size` (size <= 0: one chunk)."""
    size = size if size > 0 else max(count, 1)
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))
