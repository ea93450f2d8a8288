"""Serve the pipeline flow as a scheduled deployment, so the Prefect UI can trigger, schedule and watch it.

    bash scripts/ui.sh                                       # server + this, from the repository root
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.deploy [--cron "0 3 * * *"] [--paused]

Creates (or updates) the deployment `pipeline/ttt-pipeline` on the server at PREFECT_API_URL with a cron schedule
(UTC) and keeps a runner polling it in the foreground: every scheduled run, and every run started from the UI's
"Run" button (where target, force, profile, push and baseline are editable), executes `flows.pipeline` in a
subprocess in the current directory. One run at a time, since DVC locks the workspace anyway. Stopping the runner
pauses the schedule.
"""

from __future__ import annotations

import argparse
import os

# Served runs log at INFO so dvc's streamed output is readable in the UI (the stage commands stay WARNING otherwise).
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

from prefect.types.entrypoint import EntrypointType  # noqa: E402  (after the logging default above)

from flows.pipeline import pipeline  # noqa: E402

DEPLOYMENT = "ttt-pipeline"
DEFAULT_CRON = "0 3 * * *"  # nightly, UTC


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=DEPLOYMENT, help=f"deployment name (default: {DEPLOYMENT})")
    parser.add_argument("--cron", default=DEFAULT_CRON, help=f"cron schedule, UTC (default: '{DEFAULT_CRON}')")
    parser.add_argument("--paused", action="store_true", help="create the schedule paused (runs only on demand)")
    args = parser.parse_args(argv)
    pipeline.serve(name=args.name, cron=args.cron, paused=args.paused, limit=1, tags=["ttt", "pipeline"],
                   description="dvc repro, dvc push, and a Markdown report of metrics/params diffs and lineage",
                   # imported as `flows.pipeline` (not loaded from its file) so its type hints resolve
                   entrypoint_type=EntrypointType.MODULE_PATH)


if __name__ == "__main__":
    main()
