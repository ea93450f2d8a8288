"""The data-plane flows end to end on a micro corpus: in-process under Prefect, and through `dvc repro`.

These are the integration tests of issue 2's "done when": the flows run and publish artifacts, `dvc repro validate`
builds the corpus, a second `dvc repro` is a no-op, and a from-scratch rerun gives identical output hashes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MICRO = {"fetch": {"n_asr": 8, "n_tts": 4, "n_qa": 4, "n_chat": 2, "n_sound": 4},
         "synthesize": {"user_voices": ["flite:kal16", "espeak-ng:en-us"], "shard_size": 6},
         "validate": {"max_quarantine_fraction": 0.0}}

pytestmark = pytest.mark.slow


def micro_params(path: Path) -> Path:
    from stages.params import deep_merge, profile_params

    path.write_text(yaml.safe_dump(deep_merge(profile_params("tiny"), MICRO), sort_keys=False))
    return path


def test_flows_run_and_publish_artifacts(prefect_api, tmp_path):
    from flows.fetch import fetch_flow
    from flows.synthesize import synthesize_flow
    from flows.validate import validate_flow

    params = str(micro_params(tmp_path / "params.yaml"))
    raw, audio, out, report = (str(tmp_path / d) for d in ("raw", "audio", "validated", "validation.json"))
    counts = fetch_flow(params, raw)
    assert counts["samples"]["sound_cls"] == 4
    summary = synthesize_flow(params, raw, audio)
    assert summary["clips"] == counts["utterances"] and summary["failed"] == 0
    passed = validate_flow(params, raw, audio, out, report)
    assert passed["utterances"] == counts["utterances"]
    for key in ("fetch-summary", "synthesize-summary", "validate-summary"):
        assert "|" in latest_artifact(prefect_api, key), f"{key} artifact is empty"


def latest_artifact(api_url: str, key: str) -> str:
    """The newest artifact's Markdown under `key`, read over the REST API as the UI does.

    (Prefect 3.8's client sends nulls for unset filters, which its own server's validation rejects here;
    an empty `flow_runs` filter matches nothing, so only the artifact filter is sent.)
    """
    import httpx

    body = {"artifacts": {"key": {"any_": [key]}}, "limit": 1, "offset": 0, "sort": "CREATED_DESC"}
    found = httpx.post(f"{api_url}/artifacts/filter", json=body, timeout=30).raise_for_status().json()
    assert found, f"no artifact with key {key}"
    return found[0]["data"]


def _project(tmp_path: Path) -> Path:
    """A throwaway git + DVC project holding this checkout's code and the micro params."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("stages", "flows", "model", "data_contracts", "configs"):
        shutil.copytree(ROOT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    micro_params(proj / "params.yaml")
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=proj, check=True)
    return proj


def _dvc(proj: Path, prefect_api: str, *args: str) -> str:
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=proj, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _out_hashes(proj: Path) -> dict[str, str]:
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}


def test_dvc_repro_builds_is_a_noop_the_second_time_and_is_deterministic(prefect_api, tmp_path):
    proj = _project(tmp_path)
    _dvc(proj, prefect_api, "repro", "validate")
    first = _out_hashes(proj)
    assert set(first) == {"data/raw", "data/audio", "data/validated", "reports/validation.json"}
    again = _dvc(proj, prefect_api, "repro", "validate")
    assert "didn't change, skipping" in again and "Running stage" not in again
    shutil.rmtree(proj / "data")
    shutil.rmtree(proj / ".dvc" / "cache")
    (proj / "dvc.lock").unlink()
    _dvc(proj, prefect_api, "repro", "validate")
    assert _out_hashes(proj) == first
