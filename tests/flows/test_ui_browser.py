"""The operator's path through the Prefect UI, end to end in headless Chromium (Debian's, driven by Playwright).

`bash scripts/ui.sh` starts a Prefect server and serves the scheduled deployment in a throwaway project; the browser
opens the UI, finds the deployment and its schedule, starts a custom run with `target=fetch` from the Run button,
follows it to completion and opens its Markdown artifact. Screenshots go to reports/ui/.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from dvc_project import ROOT, git_commit, make_project
from prefect_rest import deployment_runs, get, latest_artifact, run_artifacts, wait_for_run

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "reports" / "ui"
CRON = "0 3 1 1 *"  # a schedule that will not fire during the test (03:00 UTC on 1 January)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_deployment(api_url: str, ui: subprocess.Popen, log: Path, timeout_s: float) -> dict:
    """The served deployment, once `ui.sh` has a server up and the deployment registered."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert ui.poll() is None, f"scripts/ui.sh exited {ui.returncode}:\n{log.read_text()[-3000:]}"
        try:
            return get(api_url, "deployments/name/pipeline/ttt-pipeline")
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"no deployment after {timeout_s} s:\n{log.read_text()[-3000:]}"
            time.sleep(1)


def _single_run(api_url: str, deployment_id: str, timeout_s: float = 60) -> dict:
    """The deployment's only flow run not created by its schedule, once it exists."""
    deadline = time.monotonic() + timeout_s
    while not (runs := [r for r in deployment_runs(api_url, deployment_id) if not r["auto_scheduled"]]):
        assert time.monotonic() < deadline, "the Run form created no flow run"
        time.sleep(1)
    assert len(runs) == 1, [r["name"] for r in runs]
    return runs[0]


@pytest.fixture
def served(tmp_path):
    """`bash scripts/ui.sh` in a committed throwaway project; yields (UI base URL, API URL); stops it afterwards."""
    proj = make_project(tmp_path, extra=("scripts", "pyproject.toml"))
    git_commit(proj, "micro project")
    (proj / ".venv").symlink_to(ROOT / ".venv")  # the prepared venv (TTT_SETUP=0 below skips the set-up)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(TTT_SETUP="0", TTT_PREFECT_PORT=str(port), PREFECT_HOME=str(tmp_path / "prefect-home"),
               PREFECT_RUNNER_POLL_FREQUENCY="2")  # pick the submitted run up sooner than the default 10 s
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen(["bash", "scripts/ui.sh", "--cron", CRON], cwd=proj, env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deployment = _wait_for_deployment(f"{base}/api", ui, log, timeout_s=240)
        assert deployment["schedules"][0]["schedule"]["cron"] == CRON and deployment["schedules"][0]["active"]
        yield base, f"{base}/api"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # ui.sh, its server and the runner: one process group
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


def test_operator_runs_the_deployment_from_the_ui_and_reads_its_artifact(served, tmp_path):
    from playwright.sync_api import sync_playwright

    base, api_url = served
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "failure.png").unlink(missing_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        page = browser.new_page()
        page.set_default_timeout(60_000)
        try:
            _operator_path(page, base, api_url)
        except Exception:
            page.screenshot(path=SCREENSHOTS / "failure.png", full_page=True)  # what the browser showed
            raise
        finally:
            browser.close()
    assert "| stages run | fetch |" in latest_artifact(api_url, "pipeline-summary")


def _operator_path(page, base: str, api_url: str) -> None:
    """What an operator does: deployment and schedule, a custom run from the Run button, its artifact, the runs."""
    from playwright.sync_api import expect

    page.goto(base)  # the UI's home redirects to the current UI
    page.get_by_role("link", name="Deployments").first.click()
    page.get_by_role("link", name="ttt-pipeline").click()
    expect(page.get_by_text("At 03:00 AM")).to_be_visible()  # the cron schedule, as the operator reads it
    page.screenshot(path=SCREENSHOTS / "deployment.png")

    page.get_by_role("button", name="Run").first.click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.get_by_label("target").fill("fetch")  # a parameter edited in the UI
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/deployments/deployment/**tab=Runs")
    created = _single_run(api_url, page.url.split("?")[0].rsplit("/", 1)[-1])  # the run the form created
    page.reload()
    page.get_by_role("link", name=created["name"]).first.click()
    page.wait_for_url(f"**/runs/flow-run/{created['id']}**")

    run = wait_for_run(api_url, created["id"], timeout_s=240)
    assert run["state_type"] == "COMPLETED", f"run ended {run['state_type']}: {run['state']['message']}"
    assert run["parameters"]["target"] == "fetch"
    page.reload()
    expect(page.get_by_text("Completed").first).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "flow-run.png")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("pipeline-summary").click()  # the key's history, then this run's version
    (artifact,) = run_artifacts(api_url, run["id"])
    page.get_by_role("link", name=artifact["id"][:8]).click()
    expect(page.get_by_role("heading", name="pipeline: dvc repro fetch")).to_be_visible()
    expect(page.get_by_role("heading", name="Metrics changed (workspace vs HEAD)")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "artifact.png", full_page=True)

    page.goto(f"{base}/v2/runs")  # the stage's own flow run, tagged, reported to the same server
    expect(page.get_by_text("stage:fetch").first).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "runs.png", full_page=True)
