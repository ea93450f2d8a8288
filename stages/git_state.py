"""Which commit a run belongs to, and whether the checkout differs from it: provenance for checkpoints and reports.

The checkout is the working directory's (DVC runs every stage from the project root): the project's params, data
pointers and, in this repository, the code. A DVC project elsewhere that imports this package records its own
commit.

Why pipeline outputs are ignored: during `dvc repro` every stage rewrites `dvc.lock` and the committed outputs under
`reports/` before the next stage starts, so a plain `git status` calls every run of a clean checkout "dirty". Only
changes to the other tracked files (code, params, contracts) make the recorded commit an incomplete description.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Tracked paths the pipeline itself rewrites (relative to the checkout's top): never counted as uncommitted changes.
PIPELINE_OUTPUTS = ("dvc.lock", "reports")


def git_state(root: Path | None = None) -> dict[str, str | bool]:
    """`{"sha": full commit or "unknown", "dirty": tracked non-output files differ from it}` of the checkout holding
    `root` (default: the working directory)."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=root)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        sha = git("rev-parse", "HEAD")
        excludes = [f":(top,exclude){path}" for path in PIPELINE_OUTPUTS]
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", *excludes)) if sha else False
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", False
    return {"sha": sha or "unknown", "dirty": dirty}


def describe(root: Path | None = None) -> str:
    """Short commit for humans, `+changes` when the code differs from it, e.g. `4946dfe+changes`; or 'unknown'."""
    state = git_state(root)
    if state["sha"] == "unknown":
        return "unknown"
    return str(state["sha"])[:7] + ("+changes" if state["dirty"] else "")
