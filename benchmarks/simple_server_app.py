"""PaddleNLP's SimpleServer set up as its docs say (model_zoo/ernie-3.0/deploy/simple_serving):
`paddlenlp server benchmarks.simple_server_app:app --host ... --port ...`.

Built-in model handlers per task (CustomModelHandler, TokenClsModelHandler, QAModelHandler),
the built-in MultiClassificationPostHandler for seq_cls and, as the docs have users write
them, small argmax post handlers for token_cls and qa. The task, the static model directory
and the tokenizer directory come from the environment (the app is a module-level object):
ERNIE_BENCH_TASK, ERNIE_BENCH_MODEL_DIR, ERNIE_BENCH_TOKENIZER_DIR. It is served at /<task>.

Two patches, no tuning: PaddleNLP 3.0.0b4's Predictor fails on the PIR programs Paddle 3.3
exports. It checks for INT8 by reading `op.type`, which PIR ops do not have (replaced by a
check of PIR op names), and it calls `Config.enable_memory_optim()`, whose pass Paddle 3.3
cannot find for PIR programs (made a no-op; our model step does not call it either).
Everything on the request path is as shipped.

What this baseline does not do, as shipped: qa reads only the first 128-token window of a
context (QAModelHandler asks for no overflow windows); token_cls truncates at max_seq_len.
"""
from __future__ import annotations

import os

import numpy as np
import paddle
from paddlenlp import SimpleServer
from paddlenlp.server import (
    BasePostHandler,
    CustomModelHandler,
    MultiClassificationPostHandler,
    QAModelHandler,
    TokenClsModelHandler,
)
from paddlenlp.server.predictor import Predictor


def _is_int8_pir_model(self, model_path):
    program = paddle.jit.load(model_path).program()
    return any("quantize" in op.name() for op in program.global_block().ops)


Predictor._is_int8_model = _is_int8_pir_model
paddle.inference.Config.enable_memory_optim = lambda self, *args, **kwargs: None


class TagIdsPostHandler(BasePostHandler):
    """token_cls: the tag id of every token."""

    @classmethod
    def process(cls, data, parameters):
        return {"tags": np.array(data["logits"]).argmax(axis=-1).tolist()}


class SpanPostHandler(BasePostHandler):
    """qa: the argmax start and end token of every feature."""

    @classmethod
    def process(cls, data, parameters):
        starts, ends = np.array(data["logits"]), np.array(data["logits_1"])
        return {"start": starts.argmax(axis=-1).tolist(), "end": ends.argmax(axis=-1).tolist()}


HANDLERS = {
    "seq_cls": (CustomModelHandler, MultiClassificationPostHandler),
    "token_cls": (TokenClsModelHandler, TagIdsPostHandler),
    "qa": (QAModelHandler, SpanPostHandler),
}

task = os.environ.get("ERNIE_BENCH_TASK", "seq_cls")
model_handler, post_handler = HANDLERS[task]
app = SimpleServer()
app.register(task, model_path=os.environ["ERNIE_BENCH_MODEL_DIR"],
             tokenizer_name=os.environ["ERNIE_BENCH_TOKENIZER_DIR"],
             model_handler=model_handler, post_handler=post_handler)
