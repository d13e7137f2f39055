"""What every task client needs: connect, read the ensemble's metadata, run batches."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from serving_core import interface
from serving_core.errors import ClientError


@dataclass(frozen=True)
class EnsembleInfo:
    """What a client learns from the ensemble's config instead of hard-coding it."""

    name: str
    task: str
    max_batch_size: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    parameters: dict[str, str]
    # Outputs that hold one value per text as [B, 1]: a batched model's (`<name>_direct`); the
    # ensemble's are [B] already.
    per_text_rows: tuple[str, ...] = ()

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
    max_batch_size = int(parameters.get(interface.PARAM_MAX_BATCH_SIZE) or config.get("max_batch_size", 0))
    batched = int(config.get("max_batch_size", 0)) > 0
    per_text_rows = tuple(o["name"] for o in config["output"] if batched and [int(d) for d in o["dims"]] == [1])
    return EnsembleInfo(model, parameters.get(interface.PARAM_TASK, ""), max_batch_size,
                        tuple(i["name"] for i in config["input"]), tuple(o["name"] for o in config["output"]),
                        parameters, per_text_rows)


def find_model(client: grpcclient.InferenceServerClient, task: str) -> str:
    """The one ready ensemble serving `task` (for when the user gives no --model)."""
    try:
        index = client.get_model_repository_index(as_json=True)
    except InferenceServerException as exc:
        raise ClientError(f"the server does not list its models to clients ({exc.message()}); "
                          "pass --model NAME") from exc
    names = [m["name"] for m in index.get("models", []) if m.get("state") == "READY"]
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


class TaskClient:
    """Base of the task clients: connects, checks the ensemble serves `TASK`, runs chunks."""

    TASK: str = ""

    def __init__(self, url: str, model: str | None = None, timeout_s: float | None = 60.0):
        self._client = connect(url)
        self.model = model or find_model(self._client, self.TASK)
        self.info = ensemble_info(self._client, self.model)
        if self.info.task != self.TASK:
            raise ClientError(f"model {self.model!r} serves task {self.info.task or 'unknown'!r}, not {self.TASK}")
        self.timeout_s = timeout_s

    def run(self, columns: dict[str, list[str]], outputs: list[str]) -> dict[str, np.ndarray]:
        """Send text columns (input name -> texts) in chunks of max_batch_size; join the outputs."""
        count = len(next(iter(columns.values())))
        if not count:
            raise ClientError("no texts to send")
        parts = []
        for rows in chunks(count, self.info.max_batch_size):
            inputs = [bytes_input(name, texts[rows]) for name, texts in columns.items()]
            parts.append(infer(self._client, self.model, inputs, outputs, self.timeout_s))
        joined = {name: _concat_padded([p[name] for p in parts]) for name in outputs}
        return {name: array.reshape(-1) if name in self.info.per_text_rows else array for name, array in joined.items()}


def _concat_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate chunks whose second axis may differ (span tensors are padded per chunk)."""
    if len(arrays) == 1 or all(a.shape[1:] == arrays[0].shape[1:] for a in arrays):
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    fill = b"" if arrays[0].dtype == np.object_ else (-1 if arrays[0].dtype.kind == "i" else 0)
    padded = []
    for a in arrays:
        extra = np.full((a.shape[0], width - a.shape[1], *a.shape[2:]), fill, dtype=a.dtype)
        padded.append(np.concatenate([a, extra], axis=1))
    return np.concatenate(padded)


def run_cli(argv, description: str, make_client, answer, pairs_help: str | None = None, top_k: bool = False) -> int:
    """The shared CLI of the task clients: texts from arguments or --file, JSON lines out.

    `make_client(url, model)` builds the client; `answer(client, texts, pairs, args)` returns
    one JSON-able dict per text. With `pairs_help`, every line is `first<TAB>second`; `top_k`
    adds the --top-k option.
    """
    import argparse
    import sys

    from .text_input import read_texts

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help=pairs_help or "texts")
    parser.add_argument("--url", default="localhost:8001", help="Triton gRPC address (default: %(default)s)")
    parser.add_argument("--model", help="ensemble name (default: the server's only model of this task, where the "
                        "server "
                        "lets clients list its models; `builder serve` does not)")
    parser.add_argument("--file", help="read from this file, one a line ('-' for stdin)")
    if top_k:
        parser.add_argument("--top-k", type=int, default=0, help="also print the K most probable labels")
    args = parser.parse_args(argv)
    try:
        client = make_client(args.url, args.model)
        wants_pairs = pairs_help is not None or getattr(client, "text_pair", False)
        texts, pairs = read_texts(args.texts, args.file, wants_pairs)
        if not texts:
            parser.error("no input: give it as arguments or with --file")
        for result in answer(client, texts, pairs, args):
            print(json.dumps(result, ensure_ascii=False))
    except (ClientError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
