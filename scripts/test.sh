#!/usr/bin/env bash
# The test suite: set up (idempotent), then pytest. Extra arguments go to pytest (e.g. `-m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"; mkdir -p "$PREFECT_HOME"
exec python -m pytest "$@"
