"""Lets Paddle Serving's pipeline run Paddle 3 (PIR) programs and ONNX models.

Paddle Serving 0.9's LocalPredictor only loads `__model__`/`*.pdmodel` programs. An `Op`
accepts a `local_service_handler`; `RunnerServiceHandler` stands in for Paddle Serving's
LocalServiceHandler and hands the Op a predictor backed by serving_core's runners (Paddle
Inference or ONNX Runtime): nothing in the installed packages is changed.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from serving_core.model_step import ModelStepSettings, create_step_runner
from serving_core.runtime import ids_input, run_within_budget


class RunnerPredictor:
    """The `predict(feed, fetch, batch, log_id)` Paddle Serving's Op calls in process()."""

    def __init__(self, runner, pad_values: dict[str, int], max_batch_tokens: int):
        self.runner = runner
        self._pad_values = pad_values
        self._max_batch_tokens = max_batch_tokens
        self._dtypes = {t.name: t.dtype for t in runner.signature.inputs}
        self.feed_names = list(self._dtypes)
        self.fetch_names = [t.name for t in runner.signature.outputs]
        self._lock = threading.Lock()  # one predictor, possibly several Op threads

    def predict(self, feed=None, fetch=None, batch=True, log_id=0):
        first = ids_input(list(self._dtypes))
        ids = feed[first]
        # Rows arrive padded to max_seq_len so that auto-batching can stack them; cut the
        # columns that are padding in every row before running.
        used = (ids != self._pad_values.get(first, 0)).any(axis=0)
        width = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1
        feeds = {name: np.ascontiguousarray(feed[name][:, :width]).astype(dtype, copy=False)
                 for name, dtype in self._dtypes.items()}
        with self._lock:
            outputs = run_within_budget(self.runner, feeds, self._max_batch_tokens)
        return {name: outputs[name] for name in (fetch or outputs)}


class RunnerServiceHandler:
    """Duck-types paddle_serving_server.pipeline.local_service_handler.LocalServiceHandler."""

    client_type = "local_predictor"

    def __init__(self, service_dir: Path, settings: ModelStepSettings, fetch_names: list[str]):
        self._model_dir = Path(service_dir) / "serving_server"
        self._settings = settings
        self._client_config = str(Path(service_dir) / "serving_client" / "serving_client_conf.prototxt")
        self._fetch_names = fetch_names
        self._predictor = None

    def prepare_server(self):
        """Nothing to prepare: there is no separate C++ server process."""

    def start_server(self):
        """Nothing to start: the predictor runs inside the pipeline's Op."""

    def get_port_list(self):
        return []

    def get_client_config(self):
        return self._client_config

    def get_fetch_list(self):
        return self._fetch_names

    def get_client(self, concurrency_idx=0):
        if self._predictor is None:
            self._predictor = RunnerPredictor(create_step_runner(self._settings, self._model_dir),
                                              self._settings.pad_values, self._settings.max_batch_tokens)
        return self._predictor
