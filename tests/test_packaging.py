"""The product installs and runs without the benchmark extra: nothing in builder/, serving_core/,
clients/ or model_repository/ imports benchmarks/ or the libraries only the benchmarks need."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("builder", "serving_core", "clients", "model_repository")


def _bench_only() -> set[str]:
    """Top-level modules of the `bench` extra that no other requirement brings (requests comes with
    PaddleNLP), and benchmarks/ itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {requirement.split("==")[0].split("[")[0] for requirement in project["optional-dependencies"]["bench"]}
    return (names - {"requests"}) | {"benchmarks"}


def _product_files() -> list[Path]:
    return sorted(p for folder in PRODUCT for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_product_module_imports_the_benchmarks_or_their_libraries():
    blocked = _bench_only()
    found = []
    for path in _product_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in blocked]
    assert found == []


def test_every_product_module_imports_with_the_benchmark_libraries_absent():
    """Each module of builder/, serving_core/ and clients/ imported in a fresh interpreter where those
    libraries cannot be imported (`__main__` modules aside: they run the CLI)."""
    # model_repository/ runs inside Triton and Paddle Serving (the import check above covers it).
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in _product_files() if p.parts[len(ROOT.parts)] != "model_repository" and p.name != "__main__.py"]
    script = f"""
import importlib, importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(_bench_only())!r}:
            raise ImportError(f"{{name}} is not installed (the bench extra)")
sys.meta_path.insert(0, Absent())
from serving_core.paddle_serving_compat import prepare
prepare()  # Paddle Serving's modules need protobuf's Python implementation, chosen before any import
for module in {modules!r}:
    importlib.import_module(module)
print(len({modules!r}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 50


HARNESS = {"run", "loadgen", "perf_analyzer", "systems", "workloads", "report", "common"}  # kept product-grade


def test_tests_import_only_the_benchmark_harness():
    """The one-off studies in benchmarks/ may change or go; no test imports them."""
    imported = set()
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmarks."):
                imported.add((path.name, node.module.split(".")[1]))
    assert {module for _, module in imported} <= HARNESS, sorted(imported)
    assert imported  # the harness is tested
