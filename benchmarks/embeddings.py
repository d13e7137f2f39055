"""Sentence embeddings served by us, by infinity-emb, and by plain sentence-transformers, side by side
in one run, on the same sentence-transformers models and texts.

    .venv/bin/python -m benchmarks.embeddings --reference-python /tmp/infenv/bin/python
    .venv/bin/python -m benchmarks.embeddings --reference-python P --shapes minilm --seconds 3 --rounds 1

--reference-python is an environment with torch, sentence-transformers and infinity-emb
(benchmarks/st_reference.py says how to make one); nothing of it enters the project's. For each
shape (minilm: all-MiniLM-L6-v2's 6 x 384; medium: ERNIE 3.0 Medium's 6 x 768, as a BERT) it makes a
sentence-transformers model with random weights, builds it with `builder build --task embedding`
(nothing else: the engine auto chooses) and starts, one at a time:
  triton      our ensemble on the bundled tritonserver (clients.embedding over gRPC)
  direct      the same build's `<name>_direct` model (--direct: the three steps in one batched model)
  infinity    `infinity_emb v2` on the same directory (its default torch engine; /embeddings over HTTP)
  st_encode   `SentenceTransformer.encode` in its own process, batches of `concurrency` texts back to
              back: no server, the batch a perfect server would form
Each point is a closed loop of --concurrency clients sending one text a request (benchmarks.loadgen),
warm-up excluded; --rounds N measures every system N times in turn and keeps the median round, so a
burst of other load hits them all. Our served vectors are compared with sentence-transformers' own
(cosine, worst text). Writes embeddings.json and embeddings.md into --output.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .loadgen import Point
from .run import measure
from .systems import INFINITY, TRITON
from .workloads import texts_of_varied_length

log = logging.getLogger("benchmarks.embeddings")
HERE = Path(__file__).resolve().parent
SYSTEMS = ("triton", "direct", "infinity", "st_encode")
SERVED_BY_TRITON = ("triton", "direct")


def _reference(python: str, *args: str, timeout: float = 1800) -> str:
    done = subprocess.run([python, str(HERE / "st_reference.py"), *args], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"st_reference.py {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def prepare(shape: str, work: Path, python: str, texts_file: Path) -> dict:
    """The model (made once), our repository (built once), sentence-transformers' vectors."""
    from builder.build import build
    from builder.options import BuildOptions
    from serving_core.interface import Task

    model = work / f"st_{shape}"
    if not (model / "modules.json").is_file():
        log.info("making the %s sentence-transformers model", shape)
        _reference(python, "make", "--shape", shape, "--texts", str(texts_file), "--output", str(model))
    repository = work / f"repo_{shape}"
    if not (repository / f"st_{shape}_direct").is_dir():
        build(model, repository, BuildOptions(task=Task.EMBEDDING, name=f"st_{shape}", direct=True, overwrite=True))
    vectors = work / f"vectors_{shape}.npy"
    if not vectors.is_file():
        _reference(python, "vectors", "--model", str(model), "--texts", str(texts_file), "--output", str(vectors))
    return {"model": model, "repository": repository, "vectors": vectors, "name": f"st_{shape}"}


@contextmanager
def infinity_server(python: str, model: Path, name: str, max_batch: int):
    from builder.serving.triton_server import ServerPorts

    import requests

    port = ServerPorts.free().http
    command = [str(Path(python).parent / "infinity_emb"), "v2", "--model-id", str(model), "--served-model-name", name,
               "--port", str(port), "--host", "127.0.0.1", "--device", "cpu", "--batch-size", str(max_batch),
               "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"infinity_emb exited: {process.stderr.read()[-2000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("infinity_emb did not answer /health in 600 s")
        yield url, process.pid
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)


def served_cosine(url: str, name: str, texts: list[str], expected: np.ndarray) -> float:
    """The worst cosine between our served vectors and sentence-transformers'."""
    from clients.embedding import EmbeddingClient

    from serving_core.embedding import cosines

    return float(cosines(EmbeddingClient(url, name).embed(texts), expected).min())


def measure_shape(shape: str, paths: dict, args, work: Path, texts_file: Path, rows: dict) -> dict:
    """Every system once (one round) on `shape`; rows[(shape, system, concurrency)] gets each result."""
    from builder.serving.triton_server import ServerPorts, TritonServer
    from builder.triton.repository import read_build

    notes = {}
    for system in args.systems:
        if system == "st_encode":
            for concurrency in args.concurrency:
                out = _reference(args.reference_python, "encode", "--model", str(paths["model"]), "--texts",
                                 str(texts_file), "--concurrency", str(concurrency), "--seconds", str(args.seconds),
                                 "--warmup", str(args.warmup), "--threads", str(args.threads))
                rows.setdefault((shape, system, concurrency), []).append(json.loads(out.strip().splitlines()[-1]))
            continue
        model = f"{paths['name']}_direct" if system == "direct" else paths["name"]
        # Only the measured entry is loaded: an idle second engine would share the machine.
        serving = (TritonServer(paths["repository"], ServerPorts.free(), load_models=(model,))
                   if system in SERVED_BY_TRITON else
                   infinity_server(args.reference_python, paths["model"], paths["name"], args.max_batch))
        with serving as server:
            url, pid = (server.grpc_url, server.pid) if system in SERVED_BY_TRITON else server
            spec = None
            if system in SERVED_BY_TRITON:
                spec, record = read_build(paths["repository"], paths["name"])
                notes["engine"] = record["spec"]["model"]["runtime"]
                notes[f"cosine_{system}"] = served_cosine(url, model, json.loads(texts_file.read_text()),
                                                          np.load(paths["vectors"]))
            for concurrency in args.concurrency:
                point = Point(system=f"{system}_{shape}", kind=TRITON if system in SERVED_BY_TRITON else INFINITY,
                              task="embedding", workload=f"embedding_{shape}",
                              workload_file=str(work / "requests.json"),
                              concurrency=concurrency, seconds=args.seconds, warmup_s=args.warmup, server_pid=pid,
                              url=url, model=model,
                              triton_models=(spec.step_roles if system == "triton" else
                                             {"direct": model} if system == "direct" else {}))
                rows.setdefault((shape, system, concurrency), []).append(measure(point, work))
    return notes


def median(results: list[dict]) -> dict:
    ordered = sorted(results, key=lambda r: r["texts_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "round_texts_per_s": [r["texts_per_s"] for r in results]}


def markdown(report: dict) -> str:
    lines = ["# Sentence embeddings: our Triton ensemble, infinity-emb, sentence-transformers", "",
             f"Machine: {report['machine']}. One text a request; median of {report['rounds']} rounds "
             f"(systems alternating); {report['seconds']} s a point. Command: `{report['command']}`", "",
             "| model | system | engine | cosine vs sentence-transformers | c1 p50 ms | c1 texts/s | c16 texts/s "
             "| c16 p50 ms | c16 p99 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for shape, systems in report["results"].items():
        notes = report["notes"].get(shape, {})
        for system, points in systems.items():
            one, many = points.get("1", {}), points.get("16", {})
            engine = notes.get("engine", "") if system in SERVED_BY_TRITON else (
                "torch" if system == "infinity" else "torch (no server)")
            cosine = (f"{notes[f'cosine_{system}']:.6f}" if f"cosine_{system}" in notes else
                      "(reference)" if system == "st_encode" else "")
            lines.append(f"| {shape} | {system} | {engine} | {cosine} | {one.get('p50_ms', float('nan')):.1f} | "
                         f"{one.get('texts_per_s', float('nan')):.1f} | {many.get('texts_per_s', float('nan')):.1f} | "
                         f"{many.get('p50_ms', float('nan')):.1f} | {many.get('p99_ms', float('nan')):.1f} |")
    lines += ["", "Ratios, ours / infinity-emb (texts/s at 16 clients; p50 at one client, lower is better):", ""]
    for shape, systems in report["results"].items():
        theirs = systems.get("infinity", {})
        for system in SERVED_BY_TRITON:
            ours = systems.get(system, {})
            if "16" in ours and "16" in theirs and "1" in ours and "1" in theirs:
                throughput = ours["16"]["texts_per_s"] / theirs["16"]["texts_per_s"]
                lines.append(f"- {shape}, {system}: throughput x{throughput:.2f}, "
                             f"one-text p50 x{ours['1']['p50_ms'] / theirs['1']['p50_ms']:.2f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embeddings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", required=True,
                        help="python of the environment with torch, sentence-transformers and infinity-emb")
    parser.add_argument("--shapes", nargs="+", default=["minilm", "medium"], choices=["minilm", "medium"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point, at least")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point, excluded")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every system in turn; the median is kept")
    parser.add_argument("--threads", type=int, default=2, help="math threads of sentence-transformers' encode")
    parser.add_argument("--max-batch", type=int, default=32, help="infinity-emb's --batch-size")
    parser.add_argument("--workdir", default="demo/embeddings", help="models, repositories and points (reused)")
    parser.add_argument("--output", default=None, help="results directory (default: WORKDIR)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from builder.quiet import quiet_frameworks

    quiet_frameworks()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    texts = texts_of_varied_length(11, 256, 8, 32)  # query-like sentences of 10-34 tokens
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    (work / "requests.json").write_text(json.dumps([[[t]] for t in texts], ensure_ascii=False), encoding="utf-8")
    paths = {shape: prepare(shape, work, args.reference_python, texts_file) for shape in args.shapes}
    rows: dict[tuple, list[dict]] = {}
    notes: dict[str, dict] = {}
    for round_index in range(args.rounds):
        for shape in args.shapes:
            log.info("round %d: %s", round_index + 1, shape)
            notes[shape] = measure_shape(shape, paths[shape], args, work, texts_file, rows)
    results: dict = {}
    for (shape, system, concurrency), points in rows.items():
        results.setdefault(shape, {}).setdefault(system, {})[str(concurrency)] = median(points)
    from serving_core.runtime import cpu_model

    report = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs", "rounds": args.rounds, "seconds": args.seconds,
              "command": "python -m benchmarks.embeddings " + " ".join(argv if argv is not None else sys.argv[1:]),
              "results": results, "notes": notes, "settings": {k: v for k, v in vars(args).items()}}
    output = Path(args.output or work)
    output.mkdir(parents=True, exist_ok=True)
    (output / "embeddings.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    (output / "embeddings.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
