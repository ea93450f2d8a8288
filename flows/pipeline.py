"""The schedulable parent flow: `dvc repro`, `dvc push`, and a Markdown report of what changed.

    python -m flows.pipeline                          # whole pipeline, tiny profile, push to the DVC remote
    python -m flows.pipeline --target validate --force --no-push
    bash scripts/ui.sh                                # serve it on a schedule (flows/deploy.py) with the UI

DVC owns the work and the caching, so this flow only drives the DVC CLI in the current directory (the repository
root): `dvc repro [--force] [target]` with its output streamed to the flow-run logs, then `dvc push` to the default
remote, then one artifact (key `pipeline-summary`) with the stages that ran, `dvc metrics diff` and
`dvc params diff` against a git revision (HEAD by default) and a lineage summary read from the manifests. The stage
processes `dvc repro` starts get this flow's `PREFECT_API_URL`, so their flow runs (each tagged and with its own
artifact) land on the same server.
"""

# No `from __future__ import annotations`: a served run gets this flow pickled by value into a fresh process,
# where string annotations such as "Literal[...]" would no longer resolve when Prefect validates the parameters.
import argparse
import os
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flows import runtime
from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from stages.git_state import describe

PARAMS = "params.yaml"  # dvc.yaml's stages read this file; `profile` rewrites it like `ttt profile NAME`
VALIDATED = Path("data/validated")
SHARD_INDEX = Path("data/shards/index.parquet")
_RAN = re.compile(r"^Running stage '([^']+)'")
_SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping")


class DvcError(RuntimeError):
    """A DVC command exited non-zero; the message ends with the tail of its output."""


@dataclass(frozen=True)
class Repro:
    """What `dvc repro` did, read from its output."""

    ran: tuple[str, ...]
    skipped: tuple[str, ...]


def dvc_env() -> dict[str, str]:
    """The environment for DVC and the stage processes it starts.

    The stage flows must report to this flow's server, which a test harness or a profile may have set without
    exporting it; and `python -m flows.<stage>` in dvc.yaml must find this interpreter first on PATH.
    """
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    if api_url := PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = api_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def dvc(*args: str, stream: bool = True) -> list[str]:
    """Run `dvc ARGS` (the CLI, as `python -m dvc`), optionally logging each output line; return the lines."""
    logger = get_run_logger()
    tail: deque[str] = deque(maxlen=40)
    lines: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "dvc", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=dvc_env()) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            tail.append(line)
            if stream and line.strip():
                logger.info(line)
    if proc.returncode != 0:
        output = "\n".join(tail)
        raise DvcError(f"dvc {' '.join(args)} exited {proc.returncode}:\n{output}")
    return lines


def parse_repro(lines: list[str]) -> Repro:
    """The stages `dvc repro` ran and skipped, in order."""
    ran = [m.group(1) for line in lines if (m := _RAN.match(line))]
    skipped = [m.group(1) for line in lines if (m := _SKIPPED.match(line))]
    return Repro(tuple(ran), tuple(skipped))


@task(name="dvc repro", cache_policy=NO_CACHE)
def run_repro(target: str, force: bool) -> Repro:
    """`dvc repro [--force] [target]`, streamed to the logs."""
    return parse_repro(dvc("repro", *(["--force"] if force else []), *([target] if target else [])))


@task(name="dvc push", cache_policy=NO_CACHE)
def run_push() -> str:
    """`dvc push` to the default remote; without one, say so and push nothing."""
    logger = get_run_logger()
    try:
        remote = dvc("remote", "default", stream=False)[-1].strip()
    except DvcError:
        logger.warning("no default DVC remote (`dvc remote add -d NAME URL` sets one): skipping dvc push")
        return "skipped: no default DVC remote"
    out = [line for line in dvc("push") if line.strip()]
    return f"remote '{remote}': {out[-1] if out else 'done'}"


def _has_revision(rev: str) -> bool:
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True)
    return done.returncode == 0


def _table_or(lines: list[str], empty: str) -> str:
    """DVC's Markdown table, or `empty` when it has a header and no rows."""
    rows = [line for line in lines if line.startswith("|")]
    return "\n".join(rows) if len(rows) > 2 else empty


def diffs(baseline: str) -> tuple[str, str]:
    """Markdown for the metrics and params that differ between the workspace and `baseline`."""
    unchanged = "No {} changed since `" + baseline + "`."
    metrics = _table_or(dvc("metrics", "diff", "--md", baseline, stream=False), unchanged.format("metric"))
    params = _table_or(dvc("params", "diff", "--md", baseline, stream=False), unchanged.format("param"))
    return metrics, params


def lineage_summary(validated: Path = VALIDATED, shard_index: Path = SHARD_INDEX) -> str:
    """Row counts of the validated manifests and, once packed, documents per split and the sources they cover."""
    import polars as pl

    rows: list[tuple[str, object]] = []
    for path in sorted(validated.glob("*.parquet")):
        rows.append((f"validated {path.stem}", pl.scan_parquet(path).select(pl.len()).collect().item()))
    if shard_index.is_file():
        index = pl.read_parquet(shard_index, columns=["split", "sample_id", "utt_ids"])
        rows += [(f"packed documents: {split}", n) for split, n in index.group_by("split").len().sort("split").rows()]
        rows.append(("packed samples (distinct)", index.filter(pl.col("sample_id") != "")["sample_id"].n_unique()))
        rows.append(("packed utterances (distinct)", index["utt_ids"].explode().drop_nulls().n_unique()))
    return runtime.markdown_table(rows, header=("lineage", "rows")) if rows else "No validated manifests yet."


def _apply_profile(profile: str) -> str:
    """Rewrite params.yaml for `profile` unless it already is that profile (so local edits survive)."""
    from stages.base import load_base
    from stages.params import apply_profile

    if load_base(PARAMS).profile == profile:
        return f"{profile} (params.yaml as is)"
    apply_profile(profile, PARAMS)
    get_run_logger().info("wrote %s for profile %s", PARAMS, profile)
    return f"{profile} (params.yaml rewritten)"


@flow(name="pipeline", persist_result=False)
def pipeline(target: str = "", force: bool = False, profile: Literal["tiny", "gpu", "full"] = "tiny",
             push: bool = True, baseline: str = "HEAD") -> dict:
    """Reproduce the DVC pipeline (optionally up to one stage, optionally forced), push, and report what changed.

    Args:
        target: a dvc.yaml stage to reproduce up to; empty for the whole pipeline.
        force: re-run the stages even when DVC finds nothing changed (`dvc repro --force`).
        profile: the params profile; params.yaml is rewritten for it when it describes another one.
        push: `dvc push` the outputs to the default DVC remote afterwards.
        baseline: the git revision the metrics and params diffs compare the workspace with.
    """
    if not Path("dvc.yaml").is_file():
        raise FileNotFoundError(f"no dvc.yaml in {Path.cwd()}: run the pipeline from the repository root")
    if not _has_revision(baseline):  # fail before the repro, not after it
        raise ValueError(f"baseline {baseline!r} is not a git revision of {Path.cwd()}")
    label = f"dvc repro{' --force' if force else ''}{f' {target}' if target else ''}"
    settings = [("command", f"`{label}`"), ("profile", _apply_profile(profile)), ("git", describe())]
    try:
        done = run_repro(target, force)
        pushed = run_push() if push else "skipped: push is off"
        metrics, params = diffs(baseline)
    except DvcError as exc:
        runtime.publish("pipeline", f"pipeline: {label} FAILED",
                        f"{runtime.markdown_table(settings)}\n\n```\n{exc}\n```")
        raise
    summary = runtime.markdown_table(settings + [("stages run", ", ".join(done.ran) or "none"),
                                                 ("stages unchanged", ", ".join(done.skipped) or "none"),
                                                 ("dvc push", pushed)])
    runtime.publish("pipeline", f"pipeline: {label}",
                    f"{summary}\n\n## Metrics changed (workspace vs `{baseline}`)\n\n{metrics}\n\n"
                    f"## Params changed (workspace vs `{baseline}`)\n\n{params}\n\n## Lineage\n\n{lineage_summary()}")
    return {"ran": list(done.ran), "skipped": list(done.skipped), "push": pushed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="", help="dvc.yaml stage to reproduce up to (default: all)")
    parser.add_argument("--force", action="store_true", help="re-run stages even if nothing changed")
    parser.add_argument("--profile", default="tiny", choices=["tiny", "gpu", "full"], help="params profile")
    parser.add_argument("--no-push", dest="push", action="store_false", help="do not dvc push afterwards")
    parser.add_argument("--baseline", default="HEAD", help="git revision the diffs compare with (default: HEAD)")
    args = parser.parse_args(argv)
    with tags(*runtime.run_tags("pipeline", args.profile)):
        pipeline(args.target, args.force, args.profile, args.push, args.baseline)


if __name__ == "__main__":
    main()
