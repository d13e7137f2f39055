#!/usr/bin/env bash
# Create .venv with every pinned dependency (pyproject.toml) and this project, editable.
# Idempotent: re-running after pyproject.toml changes reinstalls, otherwise it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python 3.11 (what CI tests) or 3.12 (PYTHON=python3.12: every pin installs; the steps are
# tested on 3.12 in tests/test_deploy.py); 3.13 lacks wheels for numpy 1.26, onnx and paddle2onnx.
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
[[ -n "$PYTHON" ]] || { echo "setup: Python 3.11 is required, or set PYTHON=python3.12 (Paddle 3.3 + PaddleNLP 3.0.0b4 + the bundled Triton stub)" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' || { echo "setup: $PYTHON is not Python 3.11 or 3.12" >&2; exit 1; }

stamp=".venv/.installed-$(cat pyproject.toml scripts/install_paddle_serving.py | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  exit 0
fi
echo "setup: creating .venv with $($PYTHON --version) (first run downloads about 1 GB)" >&2
# A dropped connection mid-wheel is common on CI: pip resumes a download (PIP_RESUME_RETRIES, pip >= 25.1),
# retries a request (PIP_RETRIES), and each install step is tried up to 3 times before setup gives up.
export PIP_RETRIES=10 PIP_TIMEOUT=60 PIP_RESUME_RETRIES=50
with_retries() {
  local attempt
  for attempt in 1 2 3; do
    "$@" && return 0
    echo "setup: attempt $attempt of 3 failed: $*" >&2
    sleep $((attempt * 10))
  done
  return 1
}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
with_retries .venv/bin/python -m pip install --quiet --upgrade pip
with_retries .venv/bin/python -m pip install --quiet --progress-bar off -e ".[test,bench]"  # the tests run the benchmark harness too
# Paddle Serving 0.9 needs special handling on Python 3.11 (see the script's docstring).
with_retries .venv/bin/python scripts/install_paddle_serving.py
# The bundled tritonserver's Python stub links libpython3.X: builder/serving/triton_server.py puts the
# interpreter's LIBDIR on its library path; a Python without a shared library needs the system's.
if ! .venv/bin/python -c 'import sysconfig, sys; sys.exit(not sysconfig.get_config_var("Py_ENABLE_SHARED"))' \
   && ! ldconfig -p 2>/dev/null | grep -q 'libpython3.11.so.1.0'; then
  echo "setup: installing libpython3.11 for the Triton Python backend stub" >&2
  if command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq libpython3.11) >/dev/null || { echo "setup: apt-get install libpython3.11 failed" >&2; exit 1; }
  else
    echo "setup: install libpython3.11.so.1.0 (Debian/Ubuntu: apt-get install libpython3.11)" >&2; exit 1
  fi
fi
# Debian's nginx: the gRPC load balancer of the scale-out test (tests/test_deploy.py).
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  echo "setup: installing nginx-light for the load-balancer test" >&2
  if command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq nginx-light) >/dev/null || { echo "setup: apt-get install nginx-light failed" >&2; exit 1; }
  else
    echo "setup: install nginx (Debian/Ubuntu: apt-get install nginx-light)" >&2; exit 1
  fi
fi
# Debian's libb64: a library Triton's perf_analyzer links (benchmarks/perf_analyzer.py; the tests run it).
if ! ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d'; then
  echo "setup: installing libb64-0d for Triton's perf_analyzer" >&2
  if command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq libb64-0d) >/dev/null || { echo "setup: apt-get install libb64-0d failed" >&2; exit 1; }
  else
    echo "setup: install libb64 (Debian/Ubuntu: apt-get install libb64-0d)" >&2; exit 1
  fi
fi
rm -f .venv/.installed-*
touch "$stamp"
echo "setup: done" >&2
