"""`builder demo`: the whole product on an embedded default, start to finish.

make-example -> build -> bundled tritonserver -> gRPC client -> verify -> stop.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from serving_core.interface import Task

log = logging.getLogger(__name__)
ENSEMBLE = "intent"


def run_demo(workdir: Path, texts: list[str]) -> int:
    from clients.seq_cls import SeqClsClient

    from builder.build import build
    from builder.example import intents
    from builder.example.seq_cls_example import make_seq_cls_example
    from builder.options import BuildOptions
    from builder.serving.triton_server import ServerPorts, TritonServer
    from builder.verify import verify

    example, repository = workdir / "seq_cls_example", workdir / "model_repository"
    if (example / "model_state.pdparams").is_file():
        log.info("reusing the example model in %s", example)
    else:
        log.info("1/4 training an example intent model (about 30 s) in %s", example)
        make_seq_cls_example(example)
    log.info("2/4 building the Triton repository %s", repository)
    report = build(example, repository, BuildOptions(task=Task.SEQ_CLS, name=ENSEMBLE, overwrite=True))
    log.info("built %s in %.1f s", ", ".join(report.models), report.seconds)
    log.info("3/4 starting the bundled tritonserver")
    with TritonServer(repository, ServerPorts.free()) as server:
        client = SeqClsClient(server.grpc_url, ENSEMBLE)
        texts = texts or intents.DEMO_TEXTS
        print(f"\nanswers of tritonserver ({server.grpc_url}, ensemble {ENSEMBLE!r}):")
        for result in client.classify(texts, top_k=2):
            print(json.dumps(result.to_json(), ensure_ascii=False))
        log.info("4/4 verifying the served answers against the source model in PaddleNLP")
        check = verify(repository, ENSEMBLE, server.grpc_url, [(t,) for t in texts])
    print("\nverify:", json.dumps(check.to_json(), ensure_ascii=False))
    return 0 if check.passed else 1
