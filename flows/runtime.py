"""What every stage flow shares: Prefect settings, the command line, tags and the per-run Markdown artifact.

Import this module before `prefect` (the flows do) so the settings below apply. With `PREFECT_API_URL` set
the runs go to that server (the README's run command starts one on 127.0.0.1 for a whole `dvc repro`, so every
stage shows up in the UI); without it Prefect starts a temporary local server for the process.
DVC owns caching, so Prefect result persistence and task caching stay off.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from stages.git_state import git_state, short_sha

_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # ephemeral start-up takes 12-27 s on 2 cores
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",  # structured and quiet by default; set INFO to see task runs
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
for _key, _value in _DEFAULTS.items():
    os.environ.setdefault(_key, _value)

log = logging.getLogger("ttt")


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The common command line: `--params` plus the stage's own path arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser


def git_sha() -> str:
    """The current commit (short), or 'unknown' outside a git checkout: the tag that groups a commit's runs."""
    return short_sha(git_state()["sha"])


def run_tags(stage: str, profile: str) -> list[str]:
    """Tags every stage flow run carries: stage, profile and git SHA."""
    return [f"stage:{stage}", f"profile:{profile}", f"git:{git_sha()}"]


def markdown_table(rows: Sequence[tuple[str, object]], header: tuple[str, str] = ("what", "value")) -> str:
    """A two-column Markdown table for run artifacts."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def publish(stage: str, title: str, body: str) -> None:
    """Attach a Markdown artifact (key `<stage>-summary`) to the current flow run."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=f"# {title}\n\n{body}\n", key=f"{stage}-summary", description=title)


def relpath(path: str | Path) -> str:
    """A path relative to the working directory when possible (for readable artifacts)."""
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def make_task_runner(kind: str, max_workers: int):
    """The Prefect task runner a stage maps its shards with: thread/process locally, dask/ray for a cluster."""
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max_workers)
    if kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=max_workers)
    package, module, cls = {"dask": ("prefect-dask", "prefect_dask", "DaskTaskRunner"),
                            "ray": ("prefect-ray", "prefect_ray", "RayTaskRunner")}[kind]
    try:
        runner_module = __import__(module)
    except ImportError as exc:
        raise RuntimeError(f"task_runner '{kind}' needs the {package} package: pip install {package}") from exc
    return getattr(runner_module, cls)()


def map_with_progress(task, items: list, description: str, **unmapped_kwargs) -> list:
    """Submit `task` over `items` on the flow's task runner and show a progress bar while the results arrive."""
    from prefect.futures import as_completed
    from prefect.utilities.annotations import unmapped
    from rich.progress import Progress

    futures = task.map(items, **{k: unmapped(v) for k, v in unmapped_kwargs.items()})
    with Progress(transient=True) as progress:
        bar = progress.add_task(description, total=len(futures))
        for _ in as_completed(futures):
            progress.advance(bar)
    return [f.result() for f in futures]


def run_stage_flow(flow, stage: str, params_path: str, *args, task_runner=None):
    """Run a stage flow tagged with stage, profile and git SHA (optionally on a given task runner)."""
    from prefect import tags

    from stages.base import load_base

    if task_runner is not None:
        flow = flow.with_options(task_runner=task_runner)
    with tags(*run_tags(stage, load_base(params_path).profile)):
        return flow(params_path, *args)
