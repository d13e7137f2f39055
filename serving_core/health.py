"""Liveness by inference: every ensemble of a Triton server answers a real request.

Triton's own health endpoints stay "ready" while a Python step's stub is dead, so a probe
has to run an inference. Standard library only: `builder serve` uses it, and containers run
it as their liveness probe (`python3 health.py --url 127.0.0.1:8000`, exit 0 when every
ensemble answers; the admin key from $ERNIE_SERVING_ADMIN_KEY lists the models).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

ADMIN_HEADER = "ernie-admin-key"  # the header Triton's restricted HTTP APIs check
PROBE_TEXT = "ok"


def call_json(url: str, body: dict | None, headers: dict[str, str], timeout: float) -> dict:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers},
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise RuntimeError(f"HTTP {exc.code}: {detail}") from None


_LIVELINESS = ("READY", "LOADING", "UNLOADING", "UNAVAILABLE", "")  # the first a model's versions show wins


def index_states(index) -> dict[str, str]:
    """Triton's repository index -> each model's state (READY, LOADING, UNLOADING, UNAVAILABLE): of a
    model listed once per version (a published `_direct` model), the liveliest."""
    def rank(state: str) -> int:
        return _LIVELINESS.index(state if state in _LIVELINESS else "")

    states: dict[str, str] = {}
    for entry in index if isinstance(index, list) else []:
        name, state = entry["name"], entry.get("state", "")
        if name not in states or rank(state) < rank(states[name]):
            states[name] = state
    return states


def ready_ensembles(base_url: str, headers: dict[str, str], timeout: float = 10.0) -> dict[str, dict]:
    """Name -> config of every ready ensemble on the server."""
    index = call_json(f"{base_url}/v2/repository/index", {"ready": True}, headers, timeout)
    configs = {}
    for model in index if isinstance(index, list) else []:
        config = call_json(f"{base_url}/v2/models/{model['name']}/config", None, headers, timeout)
        if config.get("platform") == "ensemble":
            configs[model["name"]] = config
    return configs


def probe_body(config: dict) -> dict:
    """One text per BYTES input of the ensemble, as a batch of one."""
    inputs = []
    for item in config["input"]:
        dims = [int(d) for d in item.get("dims", [1])]
        shape = ([1] if int(config.get("max_batch_size", 0)) > 0 else []) + [1 if d < 0 else d for d in dims]
        inputs.append({"name": item["name"], "shape": shape, "datatype": "BYTES", "data": [PROBE_TEXT]})
    return {"inputs": inputs}


def probe(base_url: str, headers: dict[str, str] | None = None, timeout: float = 30.0,
          names: list[str] | None = None) -> dict[str, str | None]:
    """Ensemble name -> None when it answered, else the error. `names`: probe these only."""
    headers = headers or {}
    configs = ready_ensembles(base_url, headers, timeout)
    results = {}
    for name in names or sorted(configs):
        if name not in configs:
            results[name] = "not loaded"
            continue
        try:
            call_json(f"{base_url}/v2/models/{name}/infer", probe_body(configs[name]), headers, timeout)
            results[name] = None
        except (OSError, RuntimeError) as exc:
            results[name] = str(exc)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:8000", help="Triton HTTP address (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default: %(default)s)")
    args = parser.parse_args(argv)
    key = os.environ.get("ERNIE_SERVING_ADMIN_KEY", "")
    base = args.url if args.url.startswith("http") else f"http://{args.url}"
    try:
        results = probe(base, {ADMIN_HEADER: key} if key else {}, args.timeout)
    except (OSError, RuntimeError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    failed = {name: error for name, error in results.items() if error}
    for name, error in failed.items():
        print(f"unhealthy: {name}: {error}", file=sys.stderr)
    if not results:
        print("unhealthy: no ensemble is loaded", file=sys.stderr)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
