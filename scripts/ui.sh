#!/usr/bin/env bash
# The operator's UI: set up (idempotent), start a local Prefect server on 127.0.0.1 (scripts/prefect_server.sh), then
# serve the scheduled pipeline deployment (flows/deploy.py) in the foreground until Ctrl-C, which also stops the
# server. Open http://127.0.0.1:4200 to run the pipeline (Deployments > ttt-pipeline > Run), edit its parameters,
# change the schedule, and read each run's logs and artifacts. Extra arguments go to `python -m flows.deploy`
# (e.g. `bash scripts/ui.sh --cron "0 */6 * * *"` or `--paused`). TTT_PREFECT_PORT picks another port,
# PREFECT_API_URL uses a server that is already running, PREFECT_API_DATABASE_CONNECTION_URL a PostgreSQL database,
# and TTT_SETUP=0 skips the set-up step (an already prepared .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${TTT_SETUP:-1}" = "0" ] || bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"; mkdir -p "$PREFECT_HOME"
# shellcheck source=scripts/prefect_server.sh
source scripts/prefect_server.sh
start_prefect_server
echo "[ui] Prefect UI: ${PREFECT_API_URL%/api}  (serving the deployment pipeline/ttt-pipeline; Ctrl-C stops)"
python -m flows.deploy "$@"
