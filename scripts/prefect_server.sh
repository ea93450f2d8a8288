# Sourced, not run: `start_prefect_server` gives this shell one local Prefect server on 127.0.0.1.
# Unless PREFECT_API_URL is already set (then that server is used as is), it starts `prefect server start` on
# TTT_PREFECT_PORT (default 4200) unless one already answers there, waits until /api/health answers (up to 180 s),
# stops it when the shell exits, and exports PREFECT_API_URL. The database is SQLite under $PREFECT_HOME unless
# PREFECT_API_DATABASE_CONNECTION_URL names another, e.g. postgresql+asyncpg://USER:PASSWORD@HOST:5432/prefect.
# The server log is $PREFECT_HOME/server.log.

start_prefect_server() {
  if [ -n "${PREFECT_API_URL:-}" ]; then
    return 0
  fi
  local port="${TTT_PREFECT_PORT:-4200}"
  local url="http://127.0.0.1:${port}/api"
  if ! curl -fsS "${url}/health" >/dev/null 2>&1; then
    # Host and port as settings, not flags, so the UI's own API address points at this port too.
    PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$port" PREFECT_SERVER_ANALYTICS_ENABLED=false \
      PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false PREFECT_LOGGING_LEVEL=WARNING \
      prefect server start >"$PREFECT_HOME/server.log" 2>&1 &
    TTT_PREFECT_SERVER_PID=$!
    trap 'kill "$TTT_PREFECT_SERVER_PID" 2>/dev/null || true' EXIT
    local waited=0
    until curl -fsS "${url}/health" >/dev/null 2>&1; do
      if ! kill -0 "$TTT_PREFECT_SERVER_PID" 2>/dev/null || [ "$waited" -ge 180 ]; then
        echo "prefect server did not start; see $PREFECT_HOME/server.log" >&2
        return 1
      fi
      sleep 1
      waited=$((waited + 1))
    done
  fi
  export PREFECT_API_URL="$url"
}
