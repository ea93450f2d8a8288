"""What Prefect costs the pipeline: the local server's start-up, and what a stage flow adds over the stage function.

Figures, wall seconds (median of `--repeats`, every command in a fresh process, as `dvc repro` runs them):
- `server_start_new_db_s`: `prefect server start` (fresh PREFECT_HOME, so it creates and migrates the SQLite
  database) until /api/health answers; `server_start_existing_db_s`: the same on the existing database.
- `fetch_direct_s`: `stages.fetch.run_fetch` on the tiny profile, called from `python -c` (no Prefect import).
- `fetch_flow_server_s`: `python -m flows.fetch` reporting to that server (what scripts/run.sh and ui.sh do).
- `fetch_flow_ephemeral_s`: `python -m flows.fetch` with no PREFECT_API_URL (a temporary server per process).
- `*_overhead_s`: flow minus direct.
The load average at the start is recorded too: on a shared 2-core machine it dominates the spread.

Run::

    .venv/bin/python -m benchmarks.prefect_overhead [--repeats 3] [--skip-ephemeral]
    # -> reports/benchmarks/prefect_overhead.json
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.results import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
DIRECT = ("import sys; from stages.base import load_base; from stages.config import load_section;"
          "from stages.fetch import FetchParams, run_fetch; p = sys.argv[1];"
          "run_fetch(load_section(p, 'fetch', FetchParams), load_base(p).seed, sys.argv[2])")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int) -> tuple[subprocess.Popen, float]:
    """`prefect server start` on 127.0.0.1:`port` with `home` as PREFECT_HOME; returns it and seconds to healthy."""
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_API_HOST="127.0.0.1",
               PREFECT_SERVER_API_PORT=str(port), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return server, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited {server.returncode}")
        time.sleep(0.1)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=60)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--params", default=str(ROOT / "configs" / "profiles" / "tiny.yaml"))
    parser.add_argument("--skip-ephemeral", action="store_true", help="skip the temporary-server runs (slowest)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "prefect_overhead.json"))
    args = parser.parse_args()

    figures: dict[str, list[float]] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        base_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        base_env |= {"PREFECT_HOME": f"{tmp}/client-home", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                     "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for i in range(args.repeats):
            server, seconds = start_server(Path(tmp) / f"home-{i}", free_port())
            figures.setdefault("server_start_new_db_s", []).append(seconds)
            stop(server)
        port = free_port()
        server, seconds = start_server(Path(tmp) / "home-0", port)  # existing database
        figures["server_start_existing_db_s"] = [seconds]
        try:
            flow_env = base_env | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
            for i in range(args.repeats):
                out = f"{tmp}/raw-{i}"
                figures.setdefault("fetch_direct_s", []).append(
                    timed([sys.executable, "-c", DIRECT, args.params, f"{out}-direct"], base_env))
                figures.setdefault("fetch_flow_server_s", []).append(timed(
                    [sys.executable, "-m", "flows.fetch", "--params", args.params, "--out", f"{out}-server"],
                    flow_env))
                if not args.skip_ephemeral:
                    figures.setdefault("fetch_flow_ephemeral_s", []).append(timed(
                        [sys.executable, "-m", "flows.fetch", "--params", args.params, "--out", f"{out}-eph"],
                        base_env))
        finally:
            stop(server)

    result: dict[str, object] = {name: round(statistics.median(v), 2) for name, v in figures.items()}
    for mode in ("server", "ephemeral"):
        if (flow_s := result.get(f"fetch_flow_{mode}_s")) is not None:
            result[f"fetch_flow_{mode}_overhead_s"] = round(flow_s - result["fetch_direct_s"], 2)
    result |= {"repeats": args.repeats, "load_average_1min": round(load, 2), "cpus": os.cpu_count(),
               "samples": {k: [round(x, 2) for x in v] for k, v in figures.items()}}
    write_json_atomic(result, Path(args.out))
    for key, value in result.items():
        if key != "samples":
            print(f"{key:36s} {value}")


if __name__ == "__main__":
    main()
