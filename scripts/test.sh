#!/usr/bin/env bash
# Set everything up, lint, then run the whole test suite (unit + real tritonserver integration).
# Arguments go to pytest: e.g. `-m "not server and not models"` runs the unit tier alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest "$@"
