"""builder: compile finetuned ERNIE models into Triton model repositories.

A whole round trip, offline:

  builder make-example --task seq_cls --output examples/seq_cls
  builder build --task seq_cls --model examples/seq_cls --output model_repository_out
  builder serve model_repository_out                 # bundled tritonserver, Ctrl-C stops it
  python -m clients.seq_cls --url localhost:8001 "打开空调" "播放周杰伦的花心"
  builder verify model_repository_out --model examples/seq_cls --texts examples/seq_cls/data.txt
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from serving_core.drain import DrainOptions
from serving_core.errors import EXIT_CODES, ServerError, UserError
from serving_core.interface import Task

log = logging.getLogger("builder")
DRAIN_DEFAULTS = DrainOptions()


def _cmd_make_example(args) -> int:
    from dataclasses import replace

    from builder.example import ExampleSpec, make_example

    spec = None if args.train_steps is None else replace(ExampleSpec(), train_steps=args.train_steps)
    summary = make_example(Task(args.task), Path(args.output), spec)
    print(json.dumps({"output": args.output, **summary}, ensure_ascii=False))
    return 0


def _cmd_build(args) -> int:
    from builder.build import build
    from builder.build_flags import build_options

    options = build_options(args)
    report = build(Path(args.model), Path(args.output), options)
    summary = {"ensemble": report.ensemble, "output": str(report.output), "models": report.models,
               "source": report.source_kind, "labels": len(report.labels), "max_seq_len": report.max_seq_len,
               "runtime": report.runtime, "seconds": round(report.seconds, 2)}
    if report.cost:
        summary["peak_mb"] = report.cost["peak_mb"]
    if report.calibration:
        summary["int8_calibration"] = report.calibration
    if report.engine_note:
        summary["engine"] = report.engine_note
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _cmd_bench(args) -> int:
    from builder.build import compare_engines
    from builder.build_flags import build_options

    choice = compare_engines(Path(args.model), build_options(args))
    log.info("%s", choice.describe())
    print(json.dumps(choice.to_json(), ensure_ascii=False))  # one line, the last, as build prints its summary
    return 0


def _cmd_serve(args) -> int:
    from builder.paddle_serving.server import PipelineService, is_pipeline_service
    from builder.serving.triton_server import ServerPorts, TritonServer, is_remote
    from builder.serving.supervisor import Supervisor, SupervisorOptions

    log_file = Path(args.log_file) if args.log_file else None
    # SIGTERM (docker stop, kubectl, systemd) as Ctrl-C: a drain once serving, a stop during start-up.
    signal.signal(signal.SIGTERM, _interrupt)
    if is_pipeline_service(Path(args.repository)):
        server = PipelineService(Path(args.repository), args.grpc_port, args.http_port, log_file, args.host)
        banner = f"Paddle Serving pipeline {args.repository}: gRPC {server.url}, HTTP {server.http_url}"
        supervisor = None
    else:
        from builder.triton.check import require_whole
        from builder.triton.versions import startup_models

        report = require_whole(args.repository)
        log.info("%s", report.summary())
        extra = tuple(arg for item in args.triton_arg for arg in shlex.split(item))
        server = TritonServer(args.repository if is_remote(args.repository) else Path(args.repository),
                              ServerPorts(args.http_port, args.grpc_port, args.metrics_port),
                              log_file, extra_args=extra, host=args.host,
                              admin_key=os.environ.get("ERNIE_SERVING_ADMIN_KEY"), python=args.python,
                              startup_timeout=args.startup_timeout, load_models=startup_models(args.repository))
        banner = f"tritonserver {args.repository}: gRPC {server.grpc_url}, HTTP {server.http_url}"
        supervisor = Supervisor(server, SupervisorOptions(interval_s=args.probe_interval)) \
            if args.probe_interval > 0 else None
    try:
        with server:
            print(f"serving {banner} (log {server.log_file}); Ctrl-C stops", flush=True)
            try:
                if supervisor is not None:
                    supervisor.watch()
                while server.is_running():
                    time.sleep(1.0)
                raise ServerError(f"the server exited (code {server.returncode}); see {server.log_file}")
            except KeyboardInterrupt:
                if isinstance(server, TritonServer) and server.is_running():
                    _drain(server, args)
    except KeyboardInterrupt:  # during start-up, or a second signal during the drain: stopped at once
        return 0
    return 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _drain(server, args) -> None:
    """Answer every request in flight before Triton stops (its own stop refuses an ensemble's next step)."""
    log.info("stopping: draining first (a second Ctrl-C or SIGTERM stops at once)")
    try:
        report = server.drain(DrainOptions(args.drain_delay, args.drain_timeout))
    except (OSError, RuntimeError) as exc:
        log.error("the drain failed, stopping anyway: %s", exc)
        return
    (log.warning if report.unanswered else log.info)("%s", report.summary())


def _cmd_check(args) -> int:
    from builder.triton.check import check_location

    report = check_location(args.repository, accept_edits=args.accept)
    (log.info if report.ok else log.error)("%s", report.summary())
    print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    return 0 if report.ok else 1


def _publish_options(args):
    from builder.publish import PublishOptions

    return PublishOptions(keep=args.keep, grace_s=args.grace, lock_wait_s=args.lock_wait)


def _cmd_publish(args) -> int:
    from builder.publish import publish
    from builder.serving.admin import LiveServer

    report = publish(Path(args.build), args.repository, LiveServer.from_environment(args.url), args.name,
                     _publish_options(args))
    print(json.dumps(report.to_json(), ensure_ascii=False))
    return 0


def _cmd_rollback(args) -> int:
    from builder.publish import rollback
    from builder.serving.admin import LiveServer

    report = rollback(args.repository, args.name, LiveServer.from_environment(args.url),
                      _publish_options(args))
    print(json.dumps(report.to_json(), ensure_ascii=False))
    return 0


def _single_ensemble(repository: Path) -> str:
    from builder.triton.repository import MANIFEST

    names = sorted(p.parent.name for p in repository.glob(f"*/{MANIFEST}"))
    if len(names) != 1:
        raise UserError(f"holds {len(names)} built ensembles ({', '.join(names) or 'none'}); pass --name",
                        str(repository))
    return names[0]


def _remote_records(url: str) -> Path:
    """The build.json of every ensemble in an object-store repository, in a local temp dir."""
    import tempfile

    from builder.serving.object_store import download_build_records

    return download_build_records(url, Path(tempfile.mkdtemp(prefix="ernie-records-")))


def _cmd_verify(args) -> int:
    from builder.source.detect import inspect_source
    from clients.text_input import read_texts

    from builder.serving.triton_server import ServerPorts, TritonServer, is_remote
    from builder.verify import input_columns, read_build, verify

    served = args.repository if is_remote(args.repository) else Path(args.repository)
    repository = Path(args.repository) if not is_remote(served) else _remote_records(served)
    name = args.name or _single_ensemble(repository)
    spec, record = read_build(repository, name)
    inputs = record.get("inputs", {})

    def given(flag: str | None, key: str) -> Path | None:
        value = flag or inputs.get(key)
        return Path(value) if value else None

    # Flags given override what the build recorded (a source moved elsewhere, another tokenizer).
    source = inspect_source(Path(args.model or record["source"]), given(args.tokenizer, "tokenizer_dir"),
                            given(args.labels, "labels_file"), given(None, "slot_labels_file"),
                            args.program or inputs.get("program_file"))
    texts_file = args.texts or str(source.directory / "data.txt")
    if texts_file != "-" and not Path(texts_file).is_file():
        raise UserError("no texts to verify with: pass --texts FILE (one text a line"
                        + (", or '-' for stdin)" if args.texts else "); the model directory has no data.txt"),
                        texts_file)
    texts, pairs = read_texts([], texts_file, input_columns(spec) == 2)
    rows = list(zip(texts, pairs)) if pairs is not None else [(t,) for t in texts]

    def run(url: str):
        from builder.triton.target import direct_model_name

        return verify(repository, name, url, rows, source, args.tolerance, args.min_agreement,
                      direct_model_name(name) if args.direct else None)

    if args.url:
        report = run(args.url)
    else:
        with TritonServer(served, ServerPorts.free()) as server:
            report = run(server.grpc_url)
    print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    return 0 if report.passed else 1


def _cmd_inspect(args) -> int:
    from builder.inspect_model import describe
    from builder.source.detect import inspect_source

    source = inspect_source(Path(args.model), Path(args.tokenizer) if args.tokenizer else None,
                            Path(args.labels) if args.labels else None, None, args.program)
    print(json.dumps(describe(source), ensure_ascii=False, indent=2))
    return 0


def _cmd_demo(args) -> int:
    from builder.demo import run_demo

    return run_demo(Path(args.workdir), args.texts)


EXIT_HELP = """exit codes (every command):
  0  done (verify: the answers agree; check: the repository is as built)
  1  verify: the answers differ; check: problems found
  2  bad input: the user's files, options or repository (UserError)
  3  a server failed or did not answer (ServerError, ClientError)
  4  an unexpected error (a traceback follows)
  5  a builder bug: what it generated does not fit together (BuildBug); please report it"""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="builder", description=__doc__, epilog=EXIT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_make_example, _add_build, _add_bench, _add_serve, _add_check, _add_verify, _add_publish,
                _add_rollback, _add_demo, _add_inspect):
        add(sub)
    return parser


def _add_make_example(sub) -> None:
    p = sub.add_parser("make-example", help="create a small offline example model (no download)",
                       description="Generate a vocabulary and a car voice-assistant intent data set, train a "
                                   "4-layer ERNIE on it for a fixed number of steps (seconds of CPU) and save a "
                                   "PaddleNLP checkpoint "
                                   "(config.json, model_state.pdparams, vocab.txt, label.txt, data.txt).")
    p.add_argument("--task", choices=[t.value for t in Task], default=Task.SEQ_CLS.value)
    p.add_argument("--output", required=True, help="directory to write the checkpoint into")
    p.add_argument("--train-steps", type=int, help="optimizer steps, the same model on any machine under any load "
                   "(default: 80, qa: 40; fewer when dev accuracy reaches 0.99, qa 0.9)")
    p.set_defaults(func=_cmd_make_example)


def _add_build(sub) -> None:
    from builder.build_flags import add_build_flags

    p = sub.add_parser("build", help="compile a model directory into a Triton model repository",
                       description="Compile a finetuned ERNIE model into a Triton ensemble "
                                   "<name> = <name>_tokenizer -> <name>_model -> <name>_postprocess. "
                                   "MODEL is a PaddleNLP checkpoint (config.json + model.safetensors or "
                                   "model_state.pdparams, sharded or not; safetensors preferred) or a "
                                   "static export (inference.json/.pdmodel + .pdiparams) or a MindSpore TinyBERT "
                                   "student (task-distilled *.ckpt + the run's yaml), with vocab.txt beside "
                                   "it or given by --tokenizer. Labels come from --labels, label.txt, or "
                                   "id2label in config.json. The engine is proven against the source model on "
                                   "sample texts before anything is written (paddle: oneDNN is turned off for a "
                                   "model it miscomputes, and the build says so). The build is atomic: a failure "
                                   "leaves OUTPUT as it was.")
    p.add_argument("--model", required=True, help="finetuned model directory")
    p.add_argument("--output", required=True, help="model repository to write into (created if missing)")
    add_build_flags(p)
    p.set_defaults(func=_cmd_build)


def _add_bench(sub) -> None:
    from builder.build_flags import add_build_flags

    p = sub.add_parser("bench", help="compare the engines on a model before building it",
                       description="What `builder build --runtime auto` does first, alone: every engine that can "
                                   "run MODEL (Paddle Inference, ONNX Runtime, OpenVINO) is proven against the "
                                   "source model on sample texts and timed on one 16-token text and on eight "
                                   "max_seq_len texts; prints each engine's figures, those set aside and why, and "
                                   "the engine --expect would pick. Writes nothing. Takes build's flags.")
    p.add_argument("--model", required=True, help="finetuned model directory")
    add_build_flags(p)
    p.set_defaults(func=_cmd_bench)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the bundled tritonserver (or a Paddle Serving pipeline)",
                       description="Start the tritonserver binary shipped in nvidia-pytriton on a model repository, "
                                   "or the Paddle Serving pipeline of a directory built with --target "
                                   "paddle-serving (gRPC on --grpc-port, HTTP on --http-port), wait until it is "
                                   "ready, serve until Ctrl-C or SIGTERM. Of a name published with `builder publish`, "
                                   "only the public models and the live version's steps are loaded. Binds "
                                   "127.0.0.1 unless --host says otherwise. Triton's shared-memory, "
                                   "model-repository, logging and trace APIs "
                                   "need the header ernie-admin-key (gRPC: triton-grpc-protocol-ernie-admin-key) "
                                   "set to $ERNIE_SERVING_ADMIN_KEY (default: a random key per start). Every "
                                   "ensemble is probed by inference; a dead step is reloaded, and when that "
                                   "fails the command exits 3 with the reason. The server dies with this "
                                   "process, even on SIGKILL. A Triton repository is checked first as "
                                   "`builder check` does, and refused (exit 2) with the files at fault when "
                                   "it is not as built. Ctrl-C or SIGTERM drains first: the server reports not "
                                   "ready, serves --drain-delay seconds more, then every ensemble takes no new "
                                   "request and those in flight are answered (up to --drain-timeout) before "
                                   "Triton stops; a second signal stops at once.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("repository", help="Triton model repository (a directory, or s3://[host:port/]bucket/path with "
                   "the AWS_* variables), or a Paddle Serving service directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="address every port binds to (default: %(default)s, this machine only; 0.0.0.0 for all "
                        "interfaces: put the server behind your own network controls)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--log-file", help="server log (default: a temp file)")
    p.add_argument("--startup-timeout", type=float, default=600.0,
                   help="Triton: seconds to wait for every model to load; past it the command exits 3 with the "
                        "reason and the end of Triton's log (default: %(default)s, sized for large repositories "
                        "from object storage)")
    p.add_argument("--probe-interval", type=float, default=5.0,
                   help="Triton: seconds between inference probes of every ensemble; a step that stopped "
                        "answering (crashed stub) is reloaded; 0: no probes (default: %(default)s)")
    p.add_argument("--triton-arg", action="append", default=[], metavar="ARGS",
                   help="extra tritonserver flags, e.g. --triton-arg='--log-verbose=1' (repeatable)")
    p.add_argument("--python", help="the Python the Triton steps run in (its version picks the stub, its "
                   "site-packages are what the steps import; default: this one)")
    p.add_argument("--drain-delay", type=float, default=DRAIN_DEFAULTS.delay_s,
                   help="Triton, on Ctrl-C or SIGTERM: seconds the server still serves after reporting not "
                        "ready, while load balancers notice (default: %(default)s)")
    p.add_argument("--drain-timeout", type=float, default=DRAIN_DEFAULTS.timeout_s,
                   help="Triton, on Ctrl-C or SIGTERM: then seconds the requests in flight get to be answered "
                        "before Triton stops (default: %(default)s)")
    p.set_defaults(func=_cmd_serve)


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="check that a repository is whole and as built, before upload or start",
                       description="Check a Triton repository (a directory, or s3://[host:port/]bucket/path) as "
                                   "Triton will read it: every config.pbtxt parses against Triton's schema, every "
                                   "ensemble's wiring holds, every model has its version directory and every "
                                   "Python step its model.py; every file the build wrote is there with the size "
                                   "and sha256 build.json recorded, and nothing was added. Edited configs "
                                   "(instances, batching) are allowed when schema and wiring hold; other edits "
                                   "are accepted with --accept, which records the files as they are now. Prints "
                                   "a JSON report. Exit codes: 0 whole and as built; 1 problems found (each "
                                   "with its file and what to do); 2 not a repository, or unreachable; "
                                   "4 an unexpected error.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("repository", help="Triton model repository: a directory or s3://... (AWS_* variables)")
    p.add_argument("--accept", action="store_true",
                   help="record changed and added files as they are now (structure must hold; a missing file "
                        "cannot be accepted); the acceptance is logged in build.json")
    p.set_defaults(func=_cmd_check)


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="compare served answers with the source model in PaddleNLP",
                       description="Run TEXTS through the source model (PaddleNLP tokenizer + model) and through "
                                   "the server; report label agreement and the largest probability difference. "
                                   "Exits 1 when a label differs or the difference exceeds --tolerance. Without "
                                   "--url a bundled server is started for the check.")
    p.add_argument("repository", help="the repository built by `builder build` (a directory or s3://...)")
    p.add_argument("--model", help="source model directory (default: the one recorded at build time)")
    p.add_argument("--tokenizer", help="tokenizer directory (vocab.txt, tokenizer_config.json; default: as built)")
    p.add_argument("--labels", help="label file (default: as built)")
    p.add_argument("--program", help="program file in MODEL (default: as built)")
    p.add_argument("--name", help="ensemble name (default: the repository's only one)")
    p.add_argument("--texts", help="texts file, one a line (pairs: text<TAB>pair); default: MODEL/data.txt")
    p.add_argument("--url", help="gRPC address of a running server")
    p.add_argument("--direct", action="store_true", help="ask NAME_direct (built with --direct), not the ensemble")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max probability difference (default: %(default)s)")
    p.add_argument("--min-agreement", type=float, default=1.0,
                   help="share of texts whose answer must be identical (default: %(default)s; INT8: e.g. 0.95)")
    p.set_defaults(func=_cmd_verify)


_PUBLISH_FLOW = ("Steps: (1) BUILD is checked as `builder check` does and copied into REPOSITORY as NAME_v<k> "
                 "(all its models at once, beside the live version's; the live files are never touched); (2) "
                 "the server loads it beside the live version, and no request reaches it yet; (3) it must answer "
                 "there: its ensemble answers a request and its model step answers the build's probe texts as "
                 "the source model did, within the tolerance the build proved; (4) the public ensemble NAME "
                 "(and NAME_direct) switches to it: new requests go to the new steps, those in flight finish on "
                 "the old ones; REPOSITORY/NAME/published.json records the live version, so a restart of "
                 "`builder serve` serves it; (5) the old version is unloaded once it has answered what it holds "
                 "(up to --grace seconds), and versions beyond --keep are deleted. A failure before (4) removes "
                 "what was added and leaves the live version serving. Needs $ERNIE_SERVING_ADMIN_KEY, the key "
                 "`builder serve` runs with. One publish or rollback at a time per repository (a lock the "
                 "kernel drops with its process). Prints one JSON line: live and previous version, the probe's "
                 "difference, the versions deleted.")


def _add_publish_flags(p) -> None:
    p.add_argument("--url", default="127.0.0.1:8000",
                   help="the live server's HTTP address, HOST:PORT (default: %(default)s)")
    p.add_argument("--keep", type=int, default=2,
                   help="versions kept on disk, the live one included (default: %(default)s, at least 2)")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds the old version gets to answer the requests it holds (default: %(default)s)")
    p.add_argument("--lock-wait", type=float, default=0.0,
                   help="seconds to wait for another publish or rollback on REPOSITORY (default: %(default)s: "
                        "refuse at once)")


def _add_publish(sub) -> None:
    p = sub.add_parser("publish", help="put a new build on a live server: checked there first, no failed request",
                       description="Publish BUILD (a repository written by `builder build`) to the live server "
                                   "serving REPOSITORY as the next version of its ensemble. " + _PUBLISH_FLOW)
    p.add_argument("build", help="the output directory of `builder build`")
    p.add_argument("repository", help="the live server's model repository (`builder serve REPOSITORY`): a directory "
                   "or s3://[host:port/]bucket/path with the AWS_* variables")
    p.add_argument("--name", help="the ensemble in BUILD to publish (default: its only one)")
    _add_publish_flags(p)
    p.set_defaults(func=_cmd_publish)


def _add_rollback(sub) -> None:
    p = sub.add_parser("rollback", help="serve the version published before the live one again",
                       description="Switch NAME on the live server back to the version kept before the live one, "
                                   "with the same steps and guarantees as a publish (2-5). " + _PUBLISH_FLOW)
    p.add_argument("repository", help="the live server's model repository: a directory or s3://...")
    p.add_argument("--name", required=True, help="the published ensemble")
    _add_publish_flags(p)
    p.set_defaults(func=_cmd_rollback)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="make an example, build, serve, query and verify, then stop",
                       description="The whole round trip on an embedded default: train an example intent model, "
                                   "build a repository, start the bundled tritonserver, classify texts over gRPC, "
                                   "verify against PaddleNLP, stop the server.")
    p.add_argument("texts", nargs="*", help="texts to classify (default: a few car-assistant commands)")
    p.add_argument("--workdir", default="demo", help="where the example and repository go (default: %(default)s)")
    p.set_defaults(func=_cmd_demo)


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="print what the builder sees in a model directory",
                       description="Format, inputs and outputs with dtypes, labels, vocabulary, size, and for "
                                   "exported programs the architecture read from the weights (layers, FFN "
                                   "widths, attention heads; pruned or not) and whether it is INT8.")
    p.add_argument("model")
    p.add_argument("--tokenizer", help="tokenizer directory, if not beside the model (as for build)")
    p.add_argument("--labels", help="label file (as for build)")
    p.add_argument("--program", help="the program file, when MODEL holds several (as for build)")
    p.set_defaults(func=_cmd_inspect)


# Commands that load Paddle or PaddleNLP (about 18 s to import): only they quiet them first.
FRAMEWORK_COMMANDS = ("make-example", "build", "bench", "verify", "demo", "inspect")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.command in FRAMEWORK_COMMANDS:
        from builder.quiet import quiet_frameworks

        quiet_frameworks()
    try:
        return args.func(args)
    except tuple(EXIT_CODES) as exc:
        log.error("%s", exc)
        return next(code for family, code in EXIT_CODES.items() if isinstance(exc, family))
    except Exception:  # a bug or an environment problem: never exit 1, which verify means "answers differ"
        log.exception("%s failed unexpectedly", args.command)
        return 4


if __name__ == "__main__":
    sys.exit(main())
