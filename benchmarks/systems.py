"""The systems the benchmark compares, and how one request is sent to each.

A system is a kind of server (or the bare engine) with a runtime. `make_caller` returns a
function that sends one request (a list of rows) and returns when the answer is parsed;
it runs inside `benchmarks.loadgen`, one caller per client thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from serving_core.interface import Task

BARE, TRITON, PADDLE_SERVING, SIMPLE_SERVER = "bare", "triton", "paddle_serving", "simple_server"
INFINITY = "infinity"  # infinity-emb's OpenAI-style /embeddings server (benchmarks/embeddings.py)
DIRECT = "direct"  # the <name>_direct model of a Triton repository built with --direct (seq_cls)
FLOOR = "floor"  # that direct model with an instant engine (benchmarks/floor.py): what serving adds
SERVED_BY_DIRECT_MODEL = (DIRECT, FLOOR)
SERVED_BY_TRITON = (TRITON, *SERVED_BY_DIRECT_MODEL)  # kinds a tritonserver serves
RUNTIMES = ("paddle", "onnxruntime", "int8", "openvino", "ovint8", "auto", "qat")  # ovint8: OpenVINO INT8
# (NNCF); qat: the compression recipe's INT8 program (benchmarks.run --qat), on the engine auto chooses


NO_HOLD = "_nohold"  # suffix: the same --direct build with the direct model's batch hold off (--batch-hold-ms 0)
FLOOR_BUILD = "_floor"  # suffix: the same --direct build, its direct model given the instant engine


@dataclass(frozen=True)
class System:
    kind: str  # BARE, TRITON, DIRECT, FLOOR, PADDLE_SERVING or SIMPLE_SERVER
    runtime: str  # one of RUNTIMES
    hold: bool = True  # DIRECT: the direct model's default batch hold; False: --batch-hold-ms 0

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.runtime if self.hold else self.runtime + NO_HOLD}"

    @property
    def build(self) -> str:
        """The Triton repository this system serves (or, bare, runs the model step of)."""
        build = self.runtime if self.hold else self.runtime + NO_HOLD
        return build + FLOOR_BUILD if self.kind == FLOOR else build

    @property
    def bare(self) -> "System":
        """The bare engine this system is compared with (same runtime, same model file)."""
        return System(BARE, self.runtime)


ALL_SYSTEMS = (
    System(BARE, "paddle"), System(BARE, "onnxruntime"), System(BARE, "int8"),
    System(TRITON, "paddle"), System(TRITON, "onnxruntime"), System(TRITON, "int8"),
    System(PADDLE_SERVING, "paddle"), System(SIMPLE_SERVER, "paddle"),
)


# Asked for by name only (not in the default run): the other engines, --runtime auto, the
# direct model of every runtime, with its batch hold and without, and its floor.
MORE_SYSTEMS = (*(System(kind, runtime) for runtime in ("openvino", "ovint8", "auto", "qat")
                  for kind in (BARE, TRITON)),
                *(System(DIRECT, runtime) for runtime in RUNTIMES),
                *(System(DIRECT, runtime, hold=False) for runtime in RUNTIMES),
                *(System(FLOOR, runtime) for runtime in RUNTIMES))


def system_named(name: str) -> System:
    for system in (*ALL_SYSTEMS, *MORE_SYSTEMS):
        if system.name == name:
            return system
    raise ValueError(f"unknown system {name!r}; known: {', '.join(s.name for s in (*ALL_SYSTEMS, *MORE_SYSTEMS))}")


def _columns(rows):
    return [list(c) for c in zip(*rows)]


def make_caller(kind: str, task: Task, url: str, model: str, timeout_s: float = 600.0):
    """A function(rows) that sends one request to the server at `url` and parses its answer."""
    task = Task(task)
    if kind in SERVED_BY_TRITON:
        return _triton_caller(task, url, model, timeout_s)
    if kind == PADDLE_SERVING:
        from clients.paddle_serving import PaddleServingClient

        client = PaddleServingClient(url, task, timeout_s=timeout_s)
        return lambda rows: client.predict(*_columns(rows))
    if kind == SIMPLE_SERVER:
        return _simple_server_caller(task, url, timeout_s)
    if kind == INFINITY:
        return _infinity_caller(url, model, timeout_s)
    raise ValueError(f"no caller for {kind!r}")


def _infinity_caller(url: str, model: str, timeout_s: float):
    """POST {"model", "input": texts} to infinity-emb's /embeddings; the vectors parsed as floats."""
    import requests

    session = requests.Session()

    def call(rows):
        response = session.post(f"{url}/embeddings", json={"model": model, "input": [r[0] for r in rows]},
                                timeout=timeout_s)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return [item["embedding"] for item in response.json()["data"]]
    return call


def _triton_caller(task: Task, url: str, model: str, timeout_s: float):
    if task is Task.SEQ_CLS:
        from clients.seq_cls import SeqClsClient

        seq_cls = SeqClsClient(url, model, timeout_s=timeout_s)
        return lambda rows: seq_cls.classify([r[0] for r in rows])
    if task is Task.TOKEN_CLS:
        from clients.token_cls import TokenClsClient

        token_cls = TokenClsClient(url, model, timeout_s=timeout_s)
        return lambda rows: token_cls.entities([r[0] for r in rows])
    if task is Task.QA:
        from clients.qa import QAClient

        qa = QAClient(url, model, timeout_s=timeout_s)
        return lambda rows: qa.answer([r[0] for r in rows], [r[1] for r in rows])
    if task is Task.INTENT_SLOT:
        from clients.intent_slot import IntentSlotClient

        intent_slot = IntentSlotClient(url, model, timeout_s=timeout_s)
        return lambda rows: intent_slot.parse([r[0] for r in rows])
    if task is Task.EMBEDDING:
        from clients.embedding import EmbeddingClient

        embedding = EmbeddingClient(url, model, timeout_s=timeout_s)
        return lambda rows: embedding.embed([r[0] for r in rows])
    raise ValueError(f"the benchmark has no Triton caller for {task.value}")


def simple_server_body(task: Task, rows, max_seq_len: int, doc_stride: int) -> dict:
    """The JSON body PaddleNLP's simple_serving clients send (model_zoo/ernie-3.0/deploy/simple_serving)."""
    parameters = {"max_seq_len": max_seq_len, "batch_size": len(rows)}
    if task is Task.QA:
        questions, contexts = _columns(rows)
        return {"data": {"question": questions, "context": contexts},
                "parameters": dict(parameters, doc_stride=doc_stride)}
    return {"data": {"text": [r[0] for r in rows]}, "parameters": parameters}


def _simple_server_caller(task: Task, url: str, timeout_s: float, max_seq_len: int = 128, doc_stride: int = 128):
    import requests

    session = requests.Session()

    def call(rows):
        response = session.post(url, json=simple_server_body(task, rows, max_seq_len, doc_stride), timeout=timeout_s)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return response.json()["result"]
    return call
