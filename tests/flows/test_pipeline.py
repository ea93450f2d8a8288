"""The parent pipeline flow: parsing DVC's output, the lineage summary, and real `dvc repro` runs under Prefect."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import polars as pl
import pytest
from dvc_project import git_commit, make_project, run_dvc
from prefect_rest import flow_runs, latest_artifact

from flows.pipeline import lineage_summary, parse_repro


def test_parse_repro_reads_the_stages_that_ran_and_were_skipped():
    out = ["Stage 'fetch' didn't change, skipping", "Running stage 'synthesize':",
           "> python -m flows.synthesize --params params.yaml", "Running stage 'validate':",
           "Updating lock file 'dvc.lock'", "  Running stage 'indented' is not DVC's own line"]
    done = parse_repro(out)
    assert done.ran == ("synthesize", "validate")
    assert done.skipped == ("fetch",)


def test_lineage_summary_counts_manifest_rows_and_packed_documents(tmp_path):
    validated, index = tmp_path / "validated", tmp_path / "index.parquet"
    assert lineage_summary(validated, index) == "No validated manifests yet."
    validated.mkdir()
    pl.DataFrame({"utt_id": ["u1", "u2", "u3"]}).write_parquet(validated / "utterances.parquet")
    pl.DataFrame({"row_id": ["u4"]}).write_parquet(validated / "quarantine.parquet")
    pl.DataFrame({"split": ["train", "train", "val"], "sample_id": ["s1", "", "s1"],
                  "utt_ids": [["u1", "u2"], ["u2"], ["u3"]]}).write_parquet(index)
    table = lineage_summary(validated, index)
    for row in ("| validated utterances | 3 |", "| validated quarantine | 1 |", "| packed documents: train | 2 |",
                "| packed documents: val | 1 |", "| packed samples (distinct) | 1 |",
                "| packed utterances (distinct) | 3 |"):
        assert row in table, table


def _section(markdown: str, heading: str) -> str:
    """The body under a `## heading` of the artifact, up to the next heading."""
    return markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


@pytest.mark.slow
def test_pipeline_reproduces_pushes_and_reports_the_diffs(prefect_api, tmp_path, monkeypatch):
    from flows.pipeline import DvcError, pipeline

    proj = make_project(tmp_path)
    remote = tmp_path / "remote"
    run_dvc(proj, prefect_api, "remote", "add", "-d", "local", str(remote))
    git_commit(proj, "micro project")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=proj, capture_output=True, text=True).stdout
    params = (proj / "params.yaml").read_text()
    (proj / "params.yaml").write_text(params.replace("n_sound: 4", "n_sound: 5"))
    monkeypatch.chdir(proj)

    done = pipeline(target="validate", profile="tiny")
    assert done["ran"] == ["fetch", "synthesize", "validate"] and done["skipped"] == []
    assert "n_sound: 5" in (proj / "params.yaml").read_text(), "profile tiny must keep the params as they are"
    assert any(remote.rglob("*")) and "remote 'local'" in done["push"]
    report = latest_artifact(prefect_api, "pipeline-summary")
    assert "| stages run | fetch, synthesize, validate |" in report
    metrics = _section(report, "Metrics changed")
    assert re.search(r"\| reports/validation.json +\| passed +\| - +\| True ", metrics), metrics
    assert "fetch.n_sound" in _section(report, "Params changed")
    assert "| validated utterances |" in _section(report, "Lineage")
    stage_runs = flow_runs(prefect_api, f"git:{sha.strip()}")
    assert {"stage:fetch", "stage:synthesize", "stage:validate"} <= {t for run in stage_runs for t in run["tags"]}

    git_commit(proj, "reproduced")
    again = pipeline(target="validate", push=False)
    assert again == {"ran": [], "skipped": ["fetch", "synthesize", "validate"], "push": "skipped: push is off"}
    report = latest_artifact(prefect_api, "pipeline-summary")
    assert "No metric changed since `HEAD`." in report and "No param changed since `HEAD`." in report

    with pytest.raises(DvcError, match="no-such-stage"):
        pipeline(target="no-such-stage", push=False)
    assert "FAILED" in latest_artifact(prefect_api, "pipeline-summary")
    with pytest.raises(ValueError, match="no-such-rev"):
        pipeline(baseline="no-such-rev")


@pytest.mark.slow
def test_pipeline_refuses_to_run_outside_a_dvc_project(prefect_api, tmp_path, monkeypatch):
    from flows.pipeline import pipeline

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no dvc.yaml"):
        pipeline()
    assert not Path(tmp_path / "params.yaml").exists()
