#!/usr/bin/env bash
# The main job: set up (idempotent), then `dvc repro` the whole pipeline on the embedded default (tiny profile, CPU).
# Extra arguments go to `dvc repro` (e.g. `bash scripts/run.sh validate` or `bash scripts/run.sh --force synthesize`).
# Unless PREFECT_API_URL is set, one local Prefect server (127.0.0.1) serves the whole run, so every stage is a flow
# run in the UI and no stage pays the temporary-server start-up; TTT_PREFECT_SERVER=0 skips it (each stage then
# starts its own temporary server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"; mkdir -p "$PREFECT_HOME"

if [ -z "${PREFECT_API_URL:-}" ] && [ "${TTT_PREFECT_SERVER:-1}" = "1" ]; then
  port="${TTT_PREFECT_PORT:-4200}"
  url="http://127.0.0.1:${port}/api"
  if ! curl -fsS "${url}/health" >/dev/null 2>&1; then
    PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING \
      prefect server start --host 127.0.0.1 --port "$port" >"$PREFECT_HOME/server.log" 2>&1 &
    server_pid=$!
    trap 'kill $server_pid 2>/dev/null || true' EXIT
    for _ in $(seq 1 120); do
      curl -fsS "${url}/health" >/dev/null 2>&1 && break
      kill -0 "$server_pid" 2>/dev/null || { echo "prefect server failed; see $PREFECT_HOME/server.log" >&2; exit 1; }
      sleep 1
    done
  fi
  export PREFECT_API_URL="$url"
fi

dvc repro "$@"
dvc metrics show
