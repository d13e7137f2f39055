"""Paddle Serving pipeline service for a model built by `builder build --target paddle-serving`.

    python service.py [--rpc-port P] [--http-port P] [--host 127.0.0.1]   # reads config.yml and service.json

Request (PipelineClient feed_dict, values are JSON): seq_cls `text` (+ `text_pair`,
optional `top_k`), token_cls / intent_slot / embedding `text`, qa `question` + `context`; each a JSON
list of strings. Response key `result`: a JSON list with one object per input, the same
objects the Triton clients print. PaddleNLP's published clients are answered in their own
protocol (serving_core/published.py): seq_cls `sentence` / token_cls `tokens` holding a numpy
array repr, answered with their keys alone (values their scripts evaluate). Bad input gets an error
reply (err_no 400); the service keeps serving. Requests carrying tensors are refused unread
(front_door.py), both ports bind --host only, and SIGTERM lets requests in flight finish.
Tokenization and decoding are serving_core's, shared with the Triton steps.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serving_core.paddle_serving_compat import prepare  # noqa: E402

prepare()

import numpy as np  # noqa: E402
from paddle_serving_server.web_service import Op, WebService  # noqa: E402

from front_door import KeyValueRequestOp, serve  # noqa: E402
from serving_adapter import RunnerServiceHandler  # noqa: E402
from serving_core import answers, interface  # noqa: E402
from serving_core.embedding import embed, embed_windows  # noqa: E402
from serving_core.errors import InvalidRequest  # noqa: E402
from serving_core.qa import best_answer  # noqa: E402
from serving_core.seq_cls import SeqClsSettings, decode, decode_windows  # noqa: E402
from serving_core.spec import EnsembleSpec  # noqa: E402
from serving_core.published import PADDLE_SERVING_KEYS, read_array_repr, seq_cls_fields, token_cls_fields  # noqa: E402
from serving_core.token_cls import (TokenClsSettings, decode_entities, token_entities,  # noqa: E402
                                    token_probabilities)
from serving_core.encoder import FeedEncoder  # noqa: E402
from serving_core.tokenization import ErnieTokenizer, is_blank  # noqa: E402
from serving_core.windows import WindowedBatch  # noqa: E402

BAD_REQUEST = 400
SERVICE = json.loads((HERE / "service.json").read_text(encoding="utf-8"))
SPEC = EnsembleSpec.from_json(SERVICE["spec"])
TASK = SPEC.task
INPUTS = list(SPEC.request_keys)
MAX_TEXTS = int(SERVICE["max_texts"])  # texts a request; each text's length is bounded by the tokenizer
PUBLISHED_KEY = PADDLE_SERVING_KEYS.get(TASK)  # what PaddleNLP's published clients send instead


def _published(request: dict) -> bool:
    """Whether the request speaks the published clients' protocol (array repr under their key)."""
    return PUBLISHED_KEY is not None and PUBLISHED_KEY in request and INPUTS[0] not in request


def _texts(request: dict, key: str) -> list[str]:
    if key not in request:
        raise InvalidRequest(f"missing {key!r}: send a JSON list of strings")
    try:
        values = json.loads(request[key])
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{key!r} is not JSON ({exc})") from None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f"{key!r} must be a non-empty JSON list of strings")
    return _checked(values, key)


def _checked(values: list[str], key: str) -> list[str]:
    if not values:
        raise InvalidRequest(f"{key!r} holds no texts")
    if len(values) > MAX_TEXTS:
        raise InvalidRequest(f"{key!r} has {len(values)} texts; at most {MAX_TEXTS} a request")
    for index, value in enumerate(values):
        if is_blank(value):
            raise InvalidRequest(f"{key}[{index}] is empty or only whitespace/control characters")
    return values


def _columns(request: dict) -> list[list[str]]:
    if _published(request):
        if len(INPUTS) > 1:
            raise InvalidRequest(f"{PUBLISHED_KEY!r} carries single texts; this model takes {INPUTS}")
        return [_checked(read_array_repr(request[PUBLISHED_KEY], PUBLISHED_KEY, MAX_TEXTS * 512), PUBLISHED_KEY)]
    columns = [_texts(request, key) for key in INPUTS]
    if any(len(c) != len(columns[0]) for c in columns):
        raise InvalidRequest(f"{INPUTS} have different lengths")
    return columns


def _by_text(batch, rows: np.ndarray):
    """(None, rows) for one row a text; for --long-text windows, (windows per text, each text's
    [W, ...] block of the [sum windows, ...] model rows, text after text)."""
    if not isinstance(batch, WindowedBatch):
        return None, rows
    bounds = np.cumsum([0, *batch.windows])
    return batch.windows, [rows[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


class ErnieOp(Op):
    @staticmethod
    def get_feed_fetch_list(client):
        """Feed and fetch names of our predictor (Op's own only knows Paddle Serving's clients)."""
        return client.feed_names, client.fetch_names

    def init_op(self):
        self.tokenizer = ErnieTokenizer.from_files(HERE / "serving_server" / SPEC.tokenizer.vocab_file, SPEC.tokenizer)
        self.encoder = FeedEncoder(self.tokenizer, SPEC.window, SPEC.feed_names)
        self.settings = SPEC.postprocess

    def _encode(self, columns):
        """(what the decoders read: the window bookkeeping, or the truncate-mode encoding;
        [rows, L] feeds: each text's windows in order)."""
        encoded = self.encoder.encode(columns)
        if encoded.windows is None:
            return encoded, encoded.feeds
        feeds, _ = encoded.flat_rows(self.tokenizer.pad_id)
        return encoded.windows, feeds

    def preprocess(self, input_dicts, data_id=0, log_id=0):
        ((_, request),) = input_dicts.items()
        try:
            _, feeds = self._encode(_columns(request))
        except InvalidRequest as exc:
            return None, False, BAD_REQUEST, str(exc)
        return self.encoder.full_width(feeds), False, None, ""

    def postprocess(self, input_dicts, fetch_dict, data_id=0, log_id=0):
        ((_, request),) = input_dicts.items()
        columns = _columns(request)
        batch, _ = self._encode(columns)  # the same deterministic tokenization as preprocess
        decoder = getattr(self, f"_decode_{TASK}")
        result, published = decoder(columns, batch, fetch_dict, request)
        # The published clients get their keys alone: they read them by position (value[0]) or
        # evaluate every value (seq_cls_rpc_client.py), which our JSON would break.
        if _published(request):
            return published, None, ""
        return {"result": json.dumps(result, ensure_ascii=False)}, None, ""

    def _decode_seq_cls(self, columns, batch, fetch, request):
        top_k = int(json.loads(request.get("top_k", "0")))
        windows, logits = _by_text(batch, fetch[SPEC.program_output(interface.LOGITS)])
        decoded = decode(logits, self.settings) if windows is None else decode_windows(logits, self.settings)
        labels = list(self.settings.labels)
        pairs = columns[1] if len(columns) > 1 else [None] * len(columns[0])
        multi_label = self.settings.multi_label
        selected = [[labels[c] for c in np.flatnonzero(row)] for row in decoded.selected]
        result = [answers.seq_cls(text, decoded.label[i], labels[decoded.label[i]], decoded.confidence[i],
                                  batch.truncated[i], pairs[i], selected[i] if multi_label else None,
                                  answers.top_k(decoded.probabilities[i], labels, top_k),
                                  None if windows is None else windows[i])
                  for i, text in enumerate(columns[0])]
        return result, seq_cls_fields(decoded.label, decoded.confidence, decoded.selected if multi_label else None)

    def _decode_embedding(self, columns, batch, fetch, request):
        windows, pooled = _by_text(batch, fetch[SPEC.program_output(interface.POOLED)])
        vectors = embed(pooled, self.settings) if windows is None else embed_windows(pooled, self.settings)
        return [answers.embedding(text, vectors[i], batch.truncated[i], None if windows is None else windows[i])
                for i, text in enumerate(columns[0])], {}

    def _per_text(self, batch, array):
        """Split [sum windows, ...] model rows back into one [W, L, ...] block per text."""
        blocks, row = [], 0
        for count in batch.windows:
            width = batch.token_index.shape[2]
            block = np.zeros((batch.token_index.shape[1], width, *array.shape[2:]), dtype=array.dtype)
            block[:count, : min(width, array.shape[1])] = array[row: row + count, :width]
            blocks.append(block)
            row += count
        return blocks

    def _decode_token_cls(self, columns, batch, fetch, request):
        logits = self._per_text(batch, fetch[SPEC.program_output(interface.LOGITS)])
        probabilities = [token_probabilities(logits[b], batch.token_index[b], batch.offsets[b])
                         for b in range(len(columns[0]))]
        entities = [decode_entities(text, p, batch.offsets[b][: len(p)], self.settings)
                    for b, (text, p) in enumerate(zip(columns[0], probabilities))]
        outside = self.settings.labels.index("O") if "O" in self.settings.labels else 0
        published = token_cls_fields(entities, [p.argmax(axis=-1) for p in probabilities], outside)
        return [answers.token_cls(text, entities[b], batch.truncated[b])
                for b, text in enumerate(columns[0])], published

    def _decode_qa(self, columns, batch, fetch, request):
        starts = self._per_text(batch, fetch[SPEC.program_output(interface.START_LOGITS)])
        ends = self._per_text(batch, fetch[SPEC.program_output(interface.END_LOGITS)])
        return [answers.qa(question, best_answer(columns[1][b], starts[b], ends[b], batch.token_index[b],
                                                 batch.offsets[b], self.settings))
                for b, question in enumerate(columns[0])], {}

    def _decode_intent_slot(self, columns, batch, fetch, request):
        intent = decode(fetch[SPEC.program_output(interface.LOGITS)], SeqClsSettings(self.settings.intents))
        slots = self._per_text(batch, fetch[SPEC.program_output(interface.SLOT_LOGITS)])
        slot_settings = TokenClsSettings(self.settings.slots, self.settings.scheme)
        return [answers.intent_slot(text, self.settings.intents[intent.label[b]], intent.confidence[b],
                                    token_entities(text, slots[b], batch.token_index[b], batch.offsets[b],
                                                   slot_settings), batch.truncated[b])
                for b, text in enumerate(columns[0])], {}


class ErnieService(WebService):
    def prepare_pipeline_config(self, yml_file=None, yml_dict=None):
        """As WebService's, with a RequestOp that never unpacks request tensors."""
        from paddle_serving_server.pipeline import ResponseOp

        response_op = ResponseOp(input_ops=[self.get_pipeline_response(KeyValueRequestOp())])
        self._server.set_response_op(response_op)
        self._server.prepare_server(yml_file=yml_file, yml_dict=yml_dict)

    def get_pipeline_response(self, read_op):
        handler = RunnerServiceHandler(HERE, SPEC.model_step(), [t.name for t in SPEC.program_outputs])
        op = ErnieOp(name=SPEC.name, input_ops=[read_op], local_service_handler=handler)
        op.client_type = handler.client_type
        return op


def main() -> None:
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpc-port", type=int, help="gRPC port (default: config.yml's rpc_port)")
    parser.add_argument("--http-port", type=int, help="HTTP port (default: config.yml's http_port)")
    parser.add_argument("--host", default="127.0.0.1", help="address both ports bind to (default: %(default)s)")
    args = parser.parse_args()
    config = yaml.safe_load((HERE / "config.yml").read_text(encoding="utf-8"))
    config["rpc_port"] = args.rpc_port or config["rpc_port"]
    config["http_port"] = args.http_port or config["http_port"]
    os.chdir(HERE)  # Paddle Serving writes PipelineServingLogs/ into the working directory
    service = ErnieService(name=SPEC.name)
    service.prepare_pipeline_config(yml_dict=config)
    serve(service._server, args.host, config["rpc_port"], config["http_port"])


if __name__ == "__main__":
    main()
