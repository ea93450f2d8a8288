"""A throwaway git + DVC project on micro params, shared by the flow integration tests.

It holds a copy of this checkout's code, so `dvc repro` there runs the real stage commands of dvc.yaml without
touching the repository's own data, lock file or remote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MICRO = {"fetch": {"n_asr": 8, "n_tts": 4, "n_qa": 4, "n_chat": 2, "n_sound": 4},
         "synthesize": {"user_voices": ["flite:kal16", "espeak-ng:en-us"], "shard_size": 6},
         "validate": {"max_quarantine_fraction": 0.0}}
CODE = ("stages", "flows", "model", "data_contracts", "configs")


def micro_params(path: Path) -> Path:
    """Write the tiny profile shrunk to a few dozen utterances to `path`."""
    from stages.params import deep_merge, profile_params

    path.write_text(yaml.safe_dump(deep_merge(profile_params("tiny"), MICRO), sort_keys=False))
    return path


def make_project(tmp_path: Path, extra: tuple[str, ...] = ()) -> Path:
    """A git + DVC project under `tmp_path` with this checkout's code (plus `extra` paths) and the micro params."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in CODE + extra:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, proj / name)
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    micro_params(proj / "params.yaml")
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=proj, check=True)
    return proj


def git_commit(proj: Path, message: str) -> None:
    """Commit everything in `proj` (with a fixed identity: CI machines may have none configured)."""
    subprocess.run(["git", "add", "-A"], cwd=proj, check=True)
    subprocess.run(["git", "-c", "user.name=ttt-tests", "-c", "user.email=tests@ttt.invalid", "commit", "-q", "-m",
                    message], cwd=proj, check=True)


def tool_env(prefect_api: str) -> dict[str, str]:
    """The environment for DVC and the stage processes: this venv first on PATH, runs reported to `prefect_api`."""
    return dict(os.environ, PREFECT_API_URL=prefect_api, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def run_dvc(proj: Path, prefect_api: str, *args: str) -> str:
    """`dvc ARGS` in `proj`; fails the test with DVC's output when it exits non-zero; returns stdout."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=proj, env=tool_env(prefect_api),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
