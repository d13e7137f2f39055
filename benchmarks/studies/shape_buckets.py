"""What shape buckets (builder --shape-buckets) cost and bound, on a built Paddle model step.

    python -m benchmarks.studies.shape_buckets REPOSITORY MODEL [--steps 0 16 8 4] [--kernels onednn]

Each configuration runs in its own process (memory is per process): the model step's program
on its engine, unbucketed (step 0) or padded to buckets of each length step and warmed as the
step warms them at load. Traffic: `--shapes` random batches of 1-`--max-rows` texts of
`--lengths` tokens (a served model step sees a new shape in almost every batch), run in
`--passes` passes; printed: texts/s per pass, the slowest call, and the process's resident
memory after loading, after the warm-up and after each pass. Engine figures, not served ones.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np


@dataclass
class BucketRun:
    step: int  # 0: unbucketed
    kernels: str
    warmed_shapes: int = 0
    warm_up_s: float = 0.0
    rss_loaded_mb: float = 0.0
    rss_warm_mb: float = 0.0
    texts_per_s: list[float] = field(default_factory=list)  # per pass
    slowest_ms: list[float] = field(default_factory=list)  # per pass
    rss_mb: list[float] = field(default_factory=list)  # after each pass
    engine_shapes: int = 0  # distinct shapes the engine was given


def _measure(args) -> BucketRun:
    import psutil

    from builder.triton.repository import read_build
    from serving_core.model_step import create_step_runner
    from serving_core.shape_buckets import WARM_UP_TOKENS

    spec, _ = read_build(Path(args.repository), args.model)
    settings = spec.model_step()
    if settings.runtime != "paddle" and args.kernels:
        raise SystemExit(f"--kernels is for Paddle model steps; this one runs {settings.runtime}")
    onednn = settings.onednn if not args.kernels else args.kernels == "onednn"
    settings = replace(settings, onednn=onednn, bucket_length_step=args.step,
                       warm_up_tokens=WARM_UP_TOKENS if args.step else 0)
    process = psutil.Process()

    def rss() -> float:
        return process.memory_info().rss / 2**20
    directory = spec.version_dir(Path(args.repository), spec.model_step_name)
    run = BucketRun(args.step, ("oneDNN" if onednn else "native") if settings.runtime == "paddle" else settings.runtime)
    base = create_step_runner(settings, directory, bucketed=False)
    run.rss_loaded_mb = rss()
    runner = base
    if args.step:
        from serving_core.shape_buckets import BucketedRunner, ShapeBuckets

        runner = BucketedRunner(base, ShapeBuckets(args.step, settings.max_seq_len, settings.max_batch_tokens),
                                settings.pad_values)
        run.warmed_shapes, run.warm_up_s = runner.warm_up(WARM_UP_TOKENS)
    run.rss_warm_mb = rss()
    seen = set()
    engine_run = base.run

    def recording(feeds):
        seen.add(next(iter(feeds.values())).shape)
        return engine_run(feeds)
    base.run = recording
    rng = np.random.default_rng(args.seed)
    low, high = args.lengths
    shapes = [(int(rng.integers(1, args.max_rows + 1)), int(rng.integers(low, high + 1))) for _ in range(args.shapes)]
    dtypes = {t.name: t.dtype for t in base.signature.inputs}
    feeds = [{name: (rng.integers(1, 100, shape) if name == "input_ids" else np.zeros(shape)).astype(dtype)
              for name, dtype in dtypes.items()} for shape in shapes]
    for _ in range(args.passes):
        started, slowest = time.perf_counter(), 0.0
        for feed in feeds:
            call = time.perf_counter()
            runner.run(feed)
            slowest = max(slowest, time.perf_counter() - call)
        run.texts_per_s.append(sum(r for r, _ in shapes) / (time.perf_counter() - started))
        run.slowest_ms.append(slowest * 1000)
        run.rss_mb.append(rss())
    run.engine_shapes = len(seen)
    return run


def table(runs: list[BucketRun]) -> str:
    lines = ["| length step | kernels | shapes warmed (s) | RSS loaded / warmed / after MB | texts/s per pass | "
             "slowest call ms per pass | shapes the engine got |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r.step or 'off'} | {r.kernels} | {r.warmed_shapes} ({r.warm_up_s:.1f}) | "
                     f"{r.rss_loaded_mb:.0f} / {r.rss_warm_mb:.0f} / {r.rss_mb[-1]:.0f} | "
                     f"{' / '.join(f'{t:.1f}' for t in r.texts_per_s)} | "
                     f"{' / '.join(f'{t:.0f}' for t in r.slowest_ms)} | {r.engine_shapes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.shape_buckets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", help="a Triton repository built by `builder build`")
    parser.add_argument("model", help="the ensemble's name in it")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 16, 8, 4],
                        help="length steps to compare, 0: unbucketed (default: %(default)s)")
    parser.add_argument("--kernels", choices=["onednn", "native"], help="Paddle: these kernels, whatever the build "
                        "chose (default: the build's)")
    parser.add_argument("--shapes", type=int, default=48, help="random batch shapes (default: %(default)s)")
    parser.add_argument("--max-rows", type=int, default=16, help="texts per batch, at most (default: %(default)s)")
    parser.add_argument("--lengths", type=int, nargs=2, default=[10, 21], metavar=("LOW", "HIGH"),
                        help="tokens per text (default: %(default)s)")
    parser.add_argument("--passes", type=int, default=3, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, help=argparse.SUPPRESS)  # one configuration, in a child process
    args = parser.parse_args(argv)
    if args.step is not None:
        print(json.dumps(asdict(_measure(args))), flush=True)
        return 0
    runs = []
    for step in args.steps:
        child = [sys.executable, "-m", "benchmarks.studies.shape_buckets",
                 *(argv if argv is not None else sys.argv[1:]),
                 "--step", str(step)]
        done = subprocess.run(child, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"step {step} failed:\n{done.stderr[-3000:]}")
        runs.append(BucketRun(**json.loads(done.stdout.strip().splitlines()[-1])))
        print(f"step {step or 'off'}: {' / '.join(f'{t:.1f}' for t in runs[-1].texts_per_s)} texts/s", flush=True)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
