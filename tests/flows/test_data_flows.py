"""The data-plane flows end to end on a micro corpus: in-process under Prefect, and through `dvc repro`.

These are the integration tests of issue 2's "done when": the flows run and publish artifacts, `dvc repro validate`
builds the corpus, a second `dvc repro` is a no-op, and a from-scratch rerun gives identical output hashes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc_project import make_project, micro_params, run_dvc
from prefect_rest import latest_artifact

pytestmark = pytest.mark.slow


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


def _out_hashes(proj: Path) -> dict[str, str]:
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}


def test_dvc_repro_builds_is_a_noop_the_second_time_and_is_deterministic(prefect_api, tmp_path):
    proj = make_project(tmp_path)
    run_dvc(proj, prefect_api, "repro", "validate")
    first = _out_hashes(proj)
    assert set(first) == {"data/raw", "data/audio", "data/validated", "reports/validation.json"}
    again = run_dvc(proj, prefect_api, "repro", "validate")
    assert "didn't change, skipping" in again and "Running stage" not in again
    shutil.rmtree(proj / "data")
    shutil.rmtree(proj / ".dvc" / "cache")
    (proj / "dvc.lock").unlink()
    run_dvc(proj, prefect_api, "repro", "validate")
    assert _out_hashes(proj) == first
