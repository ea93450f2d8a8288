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
from typing import TypedDict

#: Tracked paths the pipeline itself rewrites (relative to the checkout's top): never counted as uncommitted changes.
PIPELINE_OUTPUTS = ("dvc.lock", "reports")
#: The commit recorded outside a git checkout.
UNKNOWN = "unknown"


class GitState(TypedDict):
    """JSON-ready provenance (stored in `trainer_state.json`)."""

    sha: str
    """Full commit, or `UNKNOWN`."""
    dirty: bool
    """Tracked files other than the pipeline's outputs differ from the commit."""


def git_state(root: Path | None = None) -> GitState:
    """Provenance of the checkout holding `root` (default: the working directory)."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=root)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        sha = git("rev-parse", "HEAD")
        excludes = [f":(top,exclude){path}" for path in PIPELINE_OUTPUTS]
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", *excludes)) if sha else False
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", False
    return {"sha": sha or UNKNOWN, "dirty": dirty}


def short_sha(sha: str) -> str:
    """The 7-character form people and run tags use; `UNKNOWN` stays as it is."""
    return sha if sha == UNKNOWN else sha[:7]


def describe(root: Path | None = None) -> str:
    """Short commit for humans, `+changes` when the checkout differs from it, e.g. `4946dfe+changes`."""
    state = git_state(root)
    return short_sha(state["sha"]) + ("+changes" if state["dirty"] else "")
