"""Which commit the code runs at, and whether the code differs from it: provenance for checkpoints and reports.

Why pipeline outputs are ignored: during `dvc repro` every stage rewrites `dvc.lock` and the committed outputs under
`reports/` before the next stage starts, so a plain `git status` calls every run of a clean checkout "dirty". Only
changes to the other tracked files (code, params, contracts) make the recorded commit an incomplete description.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: The project root (this file is `<root>/stages/git_state.py`).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Tracked paths the pipeline itself rewrites (relative to the root): never counted as uncommitted changes.
PIPELINE_OUTPUTS = ("dvc.lock", "reports")


def git_state(root: Path = PROJECT_ROOT) -> dict[str, str | bool]:
    """`{"sha": full commit or "unknown", "dirty": tracked non-output files differ from it}`."""
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


def describe(root: Path = PROJECT_ROOT) -> str:
    """Short commit for humans, `+changes` when the code differs from it, e.g. `4946dfe+changes`; or 'unknown'."""
    state = git_state(root)
    if state["sha"] == "unknown":
        return "unknown"
    return str(state["sha"])[:7] + ("+changes" if state["dirty"] else "")
