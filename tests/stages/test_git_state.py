"""Provenance: the recorded commit, and "changes" only when code (not the pipeline's own outputs) differs from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stages.git_state import describe, git_state


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed project with code, params and the pipeline's tracked outputs."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "reports").mkdir()
    for name in ("stages/train.py", "params.yaml", "dvc.lock", "reports/metrics.json"):
        (tmp_path / name).write_text("v1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_a_clean_checkout_records_its_full_commit(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"sha": sha, "dirty": False}
    assert describe(repo) == sha[:7]


def test_pipeline_outputs_and_untracked_files_do_not_count_as_changes(repo: Path) -> None:
    (repo / "dvc.lock").write_text("v2\n")
    (repo / "reports/metrics.json").write_text("v2\n")
    (repo / "reports/new.md").write_text("new\n")
    (repo / "scratch.py").write_text("x\n")
    assert git_state(repo)["dirty"] is False


@pytest.mark.parametrize("edited", ["stages/train.py", "params.yaml"])
def test_edited_code_or_params_count_as_changes(repo: Path, edited: str) -> None:
    (repo / edited).write_text("v2\n")
    assert git_state(repo)["dirty"] is True
    assert describe(repo).endswith("+changes")


def test_outside_git_it_says_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state(tmp_path) == {"sha": "unknown", "dirty": False}
    assert describe(tmp_path) == "unknown"
