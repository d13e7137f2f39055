"""The serving benchmark: every system side by side, in one run, on the same models and texts.

    .venv/bin/python -m benchmarks.run                       # full run (about 30 min here)
    .venv/bin/python -m benchmarks.run --seconds 2 --concurrency 1 16 --workloads seq_cls_short

Systems (--systems; names are <kind>_<runtime>):
  bare_paddle, bare_onnxruntime, bare_int8   the model step's program in process on
                                             pre-tokenized batches: the ceiling
  triton_paddle, triton_onnxruntime, triton_int8
                                             our generated Triton ensemble, per runtime
                                             (int8 = ONNX Runtime INT8 from --quantize int8)
  paddle_serving_paddle                      our generated Paddle Serving pipeline
  bare_/triton_ openvino, ovint8, auto        by name only: OpenVINO FP32 and INT8 (NNCF), --runtime auto
  bare_/triton_/direct_qat                   by name only, with --size and --qat DIR: the compression
                                             recipe's INT8 program on that size, auto's engine
  direct_<runtime>                           by name only: the batched <name>_direct model (--direct)
  direct_<runtime>_nohold                    by name only: the same build with the direct model's
                                             batch hold off (--batch-hold-ms 0), to compare in one run
  floor_<runtime>                            by name only: that direct model with an instant engine,
                                             what serving adds to the engine (benchmarks/floor.py); the
                                             targets then give the best ratio a server that adds it can reach
  simple_server_paddle                       PaddleNLP's SimpleServer (`paddlenlp server`),
                                             set up as its docs say
--size medium|nano|base|tinybert runs the seq_cls workloads on a model of that size made from
PaddleNLP's own configuration (benchmarks/sizes.py) instead of the example model.
Workloads (--workloads): seq_cls_short (one 16-token text a request), seq_cls_varied (one text
of 8-32 tokens a request), seq_cls_long (32 x 128 tokens a request), token_cls (8 x 64 tokens),
qa (one question, a ~370-character context).
Each point is a closed loop of --concurrency clients in a separate process; warm-up is
excluded; the served process tree is sampled for RSS and CPU. On the Triton systems, Triton's
own perf_analyzer then drives the same server at the same concurrency (benchmarks/perf_analyzer.py;
--no-perf-analyzer skips it). --rounds N measures every system N times in turn and reports the
median round, so that a burst of other load on the machine hits every system alike.

Writes results.json, report.md (ratios to the bare engine, the targets, the ensemble's
per-step profile, the tokenizer comparison) and plot.png into --output.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from serving_core.runtime import ENGINE_CPU_FLAGS, cpu_flags, cpu_model

from .loadgen import Point
from .report import Report, Row, evaluate_targets, write
from .systems import (ALL_SYSTEMS, BARE, FLOOR_BUILD, PADDLE_SERVING, SERVED_BY_DIRECT_MODEL, SERVED_BY_TRITON,
                      SIMPLE_SERVER, System, system_named)
from .workloads import WORKLOAD_NAMES, Workload, standard_workloads

log = logging.getLogger("benchmarks.run")


def build_repositories(work: Path, tasks: list[str], systems: list[System], threads: int,
                       size: str | None = None, qat: Path | None = None) -> dict:
    """One Triton repository per (runtime, task); a Paddle Serving service and a SimpleServer model per task.
    The qat runtime builds `qat` (make_qat_fixture.py's output: qat_seq_cls/) instead of the size's model."""
    from builder.build import build
    from builder.options import BuildOptions
    from builder.engine.quantize import QuantizeOptions
    from builder.triton.config import BatchingOptions
    from builder.triton.repository import model_version_dir
    from serving_core.interface import Task
    from serving_core.runtime import RuntimeKind

    from .common import ensure_example
    from .floor import install_floor
    from .sizes import ensure_model

    measuring = QuantizeOptions(min_agreement=0.0)  # measuring, not gating (random-weight sizes decide nothing)
    runtime_options = {"paddle": {"runtime": RuntimeKind.PADDLE}, "onnxruntime": {"runtime": RuntimeKind.ONNXRUNTIME},
                       "int8": {"runtime": RuntimeKind.ONNXRUNTIME, "quantize": "int8", "quantize_options": measuring},
                       "openvino": {"runtime": RuntimeKind.OPENVINO},
                       "ovint8": {"runtime": RuntimeKind.OPENVINO, "quantize": "int8", "quantize_options": measuring},
                       "auto": {"runtime": None}, "qat": {"runtime": None}}
    builds = sorted({(s.build, s.runtime, s.hold) for s in systems if s.kind in (BARE, *SERVED_BY_TRITON)}
                    | ({("paddle", "paddle", True)} if any(s.kind == SIMPLE_SERVER for s in systems) else set()))
    paths: dict = {"examples": {}, "triton": {}, "paddle_serving": {}, "simple_server": {}}
    jobs = [(task, build_name) for task in tasks for build_name in builds]
    with tqdm(total=len(jobs) + len(tasks), desc="build", unit="model") as progress:
        for task in tasks:
            example = paths["examples"][task] = (ensure_model(size, work / f"{size}_seq_cls") if size
                                                 else ensure_example(work, task))
            for build_name, runtime, hold in builds:
                repository = work / "repositories" / build_name / task
                direct = task == "seq_cls" and any(s.kind in SERVED_BY_DIRECT_MODEL for s in systems)
                source, recipe = example, {}
                if runtime == "qat":
                    source = qat / "width_mult_0.75"
                    recipe = {"program_file": "int8", "tokenizer_dir": qat / "tokenizer",
                              "labels_file": qat / "labels.txt"}
                batching = {} if hold else {"model_batching": BatchingOptions(hold_ms=0.0)}
                build(source, repository, BuildOptions(task=Task(task), name=task, overwrite=True, direct=direct,
                                                       num_threads=threads, **runtime_options[runtime], **recipe,
                                                       **batching),
                      show_progress=False)
                if build_name.endswith(FLOOR_BUILD):
                    install_floor(repository, task)
                paths["triton"][(build_name, task)] = repository
                progress.update()
            if any(s.kind == PADDLE_SERVING for s in systems):
                service = work / "repositories" / "paddle_serving"
                build(example, service, BuildOptions(task=Task(task), name=task, overwrite=True, num_threads=threads,
                                                     runtime=RuntimeKind.PADDLE, target="paddle-serving"),
                      show_progress=False)
                paths["paddle_serving"][task] = service / task
            if any(s.kind == SIMPLE_SERVER for s in systems):  # the same program file, alone in its folder
                model_dir = work / "repositories" / "simple_server" / task
                model_dir.mkdir(parents=True, exist_ok=True)
                for name in ("inference.json", "inference.pdiparams"):
                    shutil.copy2(model_version_dir(paths["triton"][("paddle", task)], task) / name, model_dir / name)
                paths["simple_server"][task] = model_dir
            progress.update()
    return paths


@contextmanager
def serving(system: System, task: str, paths: dict):
    """Start the system's server for `task`; yields (url, pid, the Triton ensemble's spec or None)."""
    from builder.paddle_serving.server import PipelineService
    from builder.triton.repository import read_build
    from builder.serving.triton_server import ServerPorts, TritonServer

    from .simple_server import SimpleServerProcess

    if system.kind == BARE:
        yield "", 0, None
    elif system.kind in SERVED_BY_TRITON:
        # Only the measured entry (the ensemble loads its steps): an idle second engine would share the machine.
        entry = direct_model_name(task) if system.kind in SERVED_BY_DIRECT_MODEL else task
        with TritonServer(paths["triton"][(system.build, task)], ServerPorts.free(), load_models=(entry,)) as server:
            spec, _ = read_build(paths["triton"][(system.build, task)], task)
            yield server.grpc_url, server.pid, spec
    elif system.kind == PADDLE_SERVING:
        with PipelineService(paths["paddle_serving"][task]) as service:
            yield service.url, service.pid, None
    else:
        with SimpleServerProcess(task, paths["simple_server"][task], paths["examples"][task],
                                 ServerPorts.free().http) as server:
            yield server.url, server.pid, None


def measure(point: Point, work: Path) -> dict:
    spec = work / "points" / f"{point.workload}-{point.system}-c{point.concurrency}.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps(asdict(point)), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", str(spec)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{spec.name}: loadgen failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def direct_model_name(task: str) -> str:
    from builder.triton.target import direct_model_name as name

    return name(task)


def _measure_system(system: System, task: str, paths: dict, workloads: dict, files: dict, args, work: Path,
                    analyzer, progress) -> list[Row]:
    """Every point of one system on `task`'s workloads, its server started once; perf_analyzer
    after ours on the Triton systems."""
    rows = []
    with serving(system, task, paths) as (url, pid, spec):
        for name, workload in workloads.items():
            if workload.task.value != task:
                continue
            for concurrency in args.concurrency:
                direct = system.kind in SERVED_BY_DIRECT_MODEL
                model = direct_model_name(task) if direct else task
                roles = {"direct": model} if direct else spec.step_roles if spec else {}
                point = Point(system=system.name, kind=system.kind, task=task, workload=name,
                              workload_file=str(files[name].resolve()), concurrency=concurrency,
                              seconds=args.seconds, warmup_s=args.warmup, server_pid=pid, url=url, model=model,
                              repository=str(paths["triton"].get((system.build, task), "")),
                              num_threads=args.threads, triton_models=roles)
                result = measure(point, work)
                row = Row(name, system.name, system.kind, system.runtime, concurrency, result)
                if analyzer and spec:
                    from .perf_analyzer import measure as perf_measure

                    try:
                        row.perf_analyzer = asdict(perf_measure(analyzer, url, model, workload.requests,
                                                                [t.name for t in spec.inputs], concurrency,
                                                                args.seconds, batched=direct,
                                                                stability_percentage=args.perf_analyzer_stability))
                    except RuntimeError as exc:  # e.g. no stable window on a busy machine: ours still counts
                        log.warning("%s c%d: %s", system.name, concurrency, exc)
                rows.append(row)
                progress.set_postfix_str(f"{name} {system.name} c{concurrency}: "
                                         f"{result['texts_per_s']:.0f}/s p99 {result['p99_ms']:.0f} ms")
                progress.update()
    return rows


def median_round(rows: list[Row]) -> Row:
    """The round with the median throughput; every round's texts/s kept beside it."""
    ordered = sorted(rows, key=lambda r: r.measurement["texts_per_s"])
    row = ordered[(len(ordered) - 1) // 2]
    row.round_texts_per_s = [r.measurement["texts_per_s"] for r in rows]
    return row


def run(args) -> Report:
    from builder.quiet import quiet_frameworks

    quiet_frameworks()
    work = Path(args.workdir)
    systems = [system_named(name) for name in args.systems]
    workloads: dict[str, Workload] = {name: w for name, w in standard_workloads(args.requests).items()
                                      if name in args.workloads}
    tasks = list(dict.fromkeys(w.task.value for w in workloads.values()))
    if args.size and tasks != ["seq_cls"]:
        raise SystemExit(f"--size {args.size} makes seq_cls models: run it with seq_cls workloads only")
    if any(s.runtime == "qat" for s in systems) and not (args.qat and args.size):
        raise SystemExit("the qat systems need --size and --qat DIR (make_qat_fixture.py --config-from that "
                         "size's model directory: DIR/qat_seq_cls)")
    paths = build_repositories(work, tasks, systems, args.threads, args.size, args.qat)
    files = {}
    for name, workload in workloads.items():
        files[name] = work / "workloads" / f"{name}.json"
        files[name].parent.mkdir(parents=True, exist_ok=True)
        files[name].write_text(json.dumps(workload.requests, ensure_ascii=False), encoding="utf-8")

    report = Report(settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"},
                    machine={"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                             "cpu": cpu_model(), "cpu_flags": sorted(cpu_flags() & set(ENGINE_CPU_FLAGS)),
                             "python": platform.python_version()},
                    workloads={name: w.description for name, w in workloads.items()})
    analyzer = None
    if args.perf_analyzer and any(s.kind in SERVED_BY_TRITON for s in systems):
        from .perf_analyzer import ensure_perf_analyzer

        analyzer = ensure_perf_analyzer()
    rounds: dict[tuple, list[Row]] = {}
    with tqdm(total=args.rounds * len(systems) * len(workloads) * len(args.concurrency), desc="measure",
              unit="point") as progress:
        for _ in range(args.rounds):  # every system once a round, so a burst of other load hits them all
            for task in tasks:
                for system in systems:
                    for row in _measure_system(system, task, paths, workloads, files, args, work, analyzer, progress):
                        rounds.setdefault((row.workload, row.system, row.concurrency), []).append(row)
    report.rows = [median_round(rows) for rows in rounds.values()]
    report.fill_ratios()
    if args.tokenizer and "seq_cls" in tasks:
        from .tokenizer_speed import compare
        from .workloads import texts_of_length

        texts = {"16 tokens": texts_of_length(7, 640, 14), "128 tokens": texts_of_length(8, 640, 126)}
        report.tokenizer = [asdict(t) for t in compare(paths["examples"]["seq_cls"], texts)]
    report.targets = evaluate_targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=[s.name for s in ALL_SYSTEMS], metavar="SYSTEM",
                        help="systems to compare (default: all)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOAD_NAMES), metavar="WORKLOAD",
                        choices=WORKLOAD_NAMES, help="workloads (default: all)")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 64],
                        help="concurrent clients per point (default: 1 4 16 64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point, at least")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every system this many times, in turn; the median round is reported")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point, excluded")
    parser.add_argument("--requests", type=int, default=64, help="distinct requests per workload, sent in a loop")
    parser.add_argument("--threads", type=int, default=2, help="math threads of the model step and the bare engine")
    parser.add_argument("--no-perf-analyzer", dest="perf_analyzer", action="store_false",
                        help="skip Triton's perf_analyzer beside our load generator on the Triton systems "
                             "(fetched on first use: benchmarks/perf_analyzer.py)")
    parser.add_argument("--perf-analyzer-stability", type=float, default=50.0, metavar="PERCENT",
                        help="how far perf_analyzer's trials may differ before it tries again; it gives up "
                             "after six (default: %(default)s)")
    parser.add_argument("--no-tokenizer", dest="tokenizer", action="store_false",
                        help="skip the tokenizer comparison with PaddleNLP")
    parser.add_argument("--size", choices=["medium", "nano", "base", "tinybert"],
                        help="seq_cls workloads on a model of this size from PaddleNLP's configuration "
                             "(benchmarks/sizes.py) instead of the example model")
    parser.add_argument("--qat", type=Path, metavar="DIR",
                        help="for the qat systems: the compression recipe's output on the --size model "
                             "(tests/fixtures/paddle2/make_qat_fixture.py --config-from WORKDIR/<size>_seq_cls "
                             "--output OUT; DIR is OUT/qat_seq_cls), built with --program int8")
    parser.add_argument("--workdir", default="demo", help="example models (reused) and the repositories built")
    parser.add_argument("--output", default=None, help="results directory (default: WORKDIR/results-<time>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    report = run(args)
    output = Path(args.output or Path(args.workdir) / time.strftime("results-%Y%m%d-%H%M%S"))
    paths = write(report, output)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
