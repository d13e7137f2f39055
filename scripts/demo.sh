#!/usr/bin/env bash
# Set everything up, then: make an example model, build a Triton repository, start the
# bundled tritonserver, classify a few texts over gRPC, verify against PaddleNLP, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/builder demo --workdir demo "$@"
