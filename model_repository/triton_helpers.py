"""Small helpers shared by the Python backends (imported inside the Triton stub only)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from serving_core import interface
from serving_core.batch_hold import BatchHold
from serving_core.errors import InvalidRequest
from serving_core.feed_checks import check_finite
from serving_core.parameters import from_parameters, parameters_from_model_config
from serving_core.tokenization import is_blank


def model_config_of(args: dict) -> dict:
    return json.loads(args["model_config"])


def output_dtypes(model_config: dict) -> dict[str, np.dtype]:
    """Output name -> numpy dtype, as the config declares it."""
    return {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in model_config["output"]}


def error_response(message: str) -> "pb_utils.InferenceResponse":
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def answer_each(requests, answer, step: str) -> list:
    """`answer(requests)` -> one response per request. If it raises for the joined batch, each
    request is answered alone, so that one request's error reaches that request only."""
    try:
        return answer(requests)
    except Exception as exc:
        if len(requests) == 1:
            return [rejection(requests[0], exc, step)]
    responses = []
    for request in requests:
        try:
            responses.extend(answer([request]))
        except Exception as exc:
            responses.append(rejection(request, exc, step))
    return responses


class StepMetrics:
    """What this project adds to Triton's Prometheus metrics (the metrics port), per model:
    requests rejected by reason, and what the tokenizer step passed on (texts, texts
    truncated, windows, tokens: divide by texts for per-text figures)."""

    REASONS = ("invalid_input", "step_error")

    def __init__(self, model: str):
        def counter(name: str, description: str):
            family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
            self._families.append(family)  # a family must outlive its metrics
            return family

        self._families = []
        rejected = counter("ernie_rejected_requests_total", "Requests a step answered with an error, by reason")
        self.rejected = {reason: rejected.Metric(labels={"model": model, "reason": reason})
                         for reason in self.REASONS}
        self.texts = counter("ernie_texts_total", "Texts tokenized").Metric(labels={"model": model})
        self.truncated = counter("ernie_texts_truncated_total",
                                 "Texts cut to max_seq_len, max_windows or the character bound, flagged truncated"
                                 ).Metric(labels={"model": model})
        self.windows = counter("ernie_windows_total", "Windows (model rows) made from texts").Metric(
            labels={"model": model})
        self.tokens = counter("ernie_tokens_total", "Tokens in the rows sent to the model (special tokens and "
                              "window overlaps included)").Metric(labels={"model": model})

    def count(self, **amounts: int) -> None:
        """Add each amount to its counter (texts=, truncated=, windows=, tokens=). A zero is not
        sent: every increment is a round trip from the stub to the server."""
        for name, amount in amounts.items():
            if amount:
                getattr(self, name).increment(int(amount))


_metrics: StepMetrics | None = None  # one model instance per stub process


def rejection(request, exc: Exception, step: str) -> "pb_utils.InferenceResponse":
    """The error response for one request, logged with its request id and counted."""
    invalid = isinstance(exc, InvalidRequest)
    message = str(exc) if invalid else f"{step} failed: {type(exc).__name__}: {exc}"
    if _metrics is not None:
        _metrics.rejected["invalid_input" if invalid else "step_error"].increment(1)
    pb_utils.Logger.log_warn(f"rejected request {request.request_id() or '-'} in the {step}: {message}")
    return error_response(message)


def input_array(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def decode_texts(values: np.ndarray, tensor_name: str) -> list[str]:
    """BYTES [B, 1] -> list of str; rejects invalid UTF-8 and empty or blank text."""
    texts = []
    for index, value in enumerate(values.reshape(-1)):
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{tensor_name}[{index}] is not valid UTF-8 "
                                 f"({exc.reason} at byte {exc.start})") from None
        if is_blank(text):
            raise InvalidRequest(f"{tensor_name}[{index}] is empty or only whitespace/control characters")
        texts.append(text)
    return texts


def read_text_columns(request, names: list[str]) -> list[list[str]]:
    """The request's text inputs, one list of str per name; raises InvalidRequest for a missing
    input, bad text, or columns of different lengths."""
    arrays = {name: input_array(request, name) for name in names}
    missing = [name for name, array in arrays.items() if array is None]
    if missing:
        raise InvalidRequest(f"inputs {missing} are missing")
    columns = [decode_texts(array, name) for name, array in arrays.items()]
    if any(len(c) != len(columns[0]) for c in columns):
        raise InvalidRequest(f"inputs {names} have different numbers of rows")
    return columns


def requested_dtypes(request, dtypes: dict[str, np.dtype]) -> dict[str, np.dtype]:
    """The outputs `request` asked for, with their dtypes (Triton lists every output when a
    client names none): the others are neither built nor sent to the server."""
    names = set(request.requested_output_names())
    return {name: dtype for name, dtype in dtypes.items() if name in names}


def output_tensor(name: str, array: np.ndarray, dtype: np.dtype) -> "pb_utils.Tensor":
    return pb_utils.Tensor(name, np.ascontiguousarray(array.astype(dtype, copy=False)))


def per_text_rows(requests, names: list[str]) -> tuple[list[int], dict[str, list[np.ndarray]]]:
    """Rows of every request, flattened: sizes per request and name -> one array per text.
    Raises InvalidRequest for a missing input or one holding NaN or infinity."""
    sizes, columns = [], {name: [] for name in names}
    for request in requests:
        arrays = {name: input_array(request, name) for name in names}
        missing = [name for name, array in arrays.items() if array is None]
        if missing:
            raise InvalidRequest(f"inputs {missing} are missing")
        check_finite(arrays)
        sizes.append(len(arrays[names[0]]))
        for name, array in arrays.items():
            columns[name].extend(array)
    return sizes, columns


def truncated_flags(rows: dict[str, list[np.ndarray]]) -> np.ndarray:
    """[B] bool: the tokenizer's per-text truncation flags ([1] each), as the postprocess answers them."""
    return np.array([bool(flag[0]) for flag in rows[interface.TEXT_TRUNCATED]], dtype=bool)


def text_of(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def responses_from_columns(sizes: list[int], columns: dict[str, np.ndarray], dtypes: dict[str, np.dtype]):
    """Split [total, ...] result columns back into one response per request."""
    responses, row = [], 0
    for size in sizes:
        tensors = [output_tensor(name, columns[name][row: row + size], dtype) for name, dtype in dtypes.items()]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        row += size
    return responses


class StepModel:
    """What every Python step shares: its config read once in `initialize`, and the error
    policy of `execute` (`answer_each`: one request's error reaches that request only).
    A step names itself in STEP and implements `setup` and `answer`."""

    STEP = "step"

    def initialize(self, args):
        global _metrics
        self.config = model_config_of(args)
        self.metrics = _metrics = StepMetrics(self.config["name"])
        self.parameters = parameters_from_model_config(self.config)
        self.dtypes = output_dtypes(self.config)
        self.version_dir = Path(args["model_repository"]) / args["model_version"]
        self.hold = self.read_settings(BatchHold)
        self.setup()

    def read_settings(self, cls):
        """The typed settings the builder wrote into this step's config parameters."""
        return from_parameters(cls, self.parameters)

    def setup(self) -> None:
        """Step state from self.config and self.parameters."""

    def execute(self, requests):
        """The responses; or, where the step holds its instance after a batch (BatchHold), None
        after sending them itself and holding, so that clients are answered before the hold."""
        started = time.perf_counter()
        responses = answer_each(requests, self.answer, self.STEP)
        hold = self.hold.seconds(len(requests), time.perf_counter() - started)
        if hold <= 0:
            return responses
        for request, response in zip(requests, responses):
            request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        time.sleep(hold)
        return None

    def answer(self, requests) -> list:
        """One response per request; raise (InvalidRequest for the client's fault) to fail them."""
        raise NotImplementedError


class DirectModel(StepModel):
    """What both direct models (`<name>_direct`: tokenizer, engine and decoding in one batched
    model) share: the tokenizer, engine and encoder set up from their settings, the requests' texts
    run as one engine batch (in groups within the token budget), and one response per request with
    the outputs it asks for. A direct model implements `setup_decoding` and `answer`."""

    STEP = "direct model"

    def setup(self):
        from serving_core.encoder import FeedEncoder
        from serving_core.model_step import ModelStepSettings, create_step_runner
        from serving_core.tokenization import ErnieTokenizer, TokenizerSettings
        from serving_core.windows import WindowSettings

        tokenizer_settings = self.read_settings(TokenizerSettings)
        self.tokenizer = ErnieTokenizer.from_files(self.version_dir / tokenizer_settings.vocab_file, tokenizer_settings)
        step = self.read_settings(ModelStepSettings)
        self.runner = create_step_runner(step, self.version_dir, warn=pb_utils.Logger.log_warn,
                                         log=pb_utils.Logger.log_info)
        self.max_batch_tokens = step.max_batch_tokens
        self.feed_dtypes = {t.name: t.dtype for t in self.runner.signature.inputs}
        self.encoder = FeedEncoder(self.tokenizer, self.read_settings(WindowSettings), list(self.feed_dtypes))
        self.program_output = self.runner.signature.outputs[0].name
        self.text_inputs = [i["name"] for i in self.config["input"]]
        self.setup_decoding()

    def setup_decoding(self) -> None:
        """Decoding state from the config's settings."""

    def run_texts(self, requests):
        """(each request's text columns, the encoded batch, the program's output for every text)."""
        from serving_core.runtime import run_within_budget

        parsed = [read_text_columns(request, self.text_inputs) for request in requests]
        columns = [[t for p in parsed for t in p[k]] for k in range(len(self.text_inputs))]
        encoded = self.encoder.encode(columns)
        self.metrics.count(texts=len(encoded.truncated), truncated=encoded.truncated.sum())
        feeds = {name: np.ascontiguousarray(encoded.feeds[name], dtype=dtype)
                 for name, dtype in self.feed_dtypes.items()}
        output = run_within_budget(self.runner, feeds, self.max_batch_tokens)[self.program_output]
        check_finite({self.program_output: output})
        return parsed, encoded, output

    def respond(self, requests, parsed, columns: dict[str, np.ndarray]) -> list:
        """One response per request: its rows of `columns`, the outputs it asks for."""
        responses, row = [], 0
        for request, item in zip(requests, parsed):
            rows = slice(row, row + len(item[0]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                output_tensor(name, columns[name][rows], dtype)
                for name, dtype in requested_dtypes(request, self.dtypes).items()]))
            row += len(item[0])
        return responses
