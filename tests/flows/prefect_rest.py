"""Reading a Prefect server over its REST API, as the UI does.

Prefect 3.8's Python client sends nulls for unset filters (`read_artifacts`, `Artifact.get`), which its own server's
validation rejects with 422 here; these helpers send only the filters they mean.
"""

from __future__ import annotations

import time

import httpx

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def post(api_url: str, path: str, body: dict) -> list | dict:
    return httpx.post(f"{api_url}/{path}", json=body, timeout=30).raise_for_status().json()


def get(api_url: str, path: str) -> dict:
    return httpx.get(f"{api_url}/{path}", timeout=30).raise_for_status().json()


def latest_artifact(api_url: str, key: str) -> str:
    """The newest artifact's Markdown under `key` (an empty `flow_runs` filter would match nothing: not sent)."""
    body = {"artifacts": {"key": {"any_": [key]}}, "limit": 1, "offset": 0, "sort": "CREATED_DESC"}
    found = post(api_url, "artifacts/filter", body)
    assert found, f"no artifact with key {key}"
    return found[0]["data"]


def run_artifacts(api_url: str, flow_run_id: str) -> list[dict]:
    """Every artifact a flow run published."""
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 50, "offset": 0}
    return post(api_url, "artifacts/filter", body)


def flow_runs(api_url: str, tag: str) -> list[dict]:
    """The flow runs carrying `tag`, newest first."""
    body = {"flow_runs": {"tags": {"all_": [tag]}}, "limit": 50, "offset": 0, "sort": "START_TIME_DESC"}
    return post(api_url, "flow_runs/filter", body)


def deployment_runs(api_url: str, deployment_id: str) -> list[dict]:
    """The flow runs of a deployment, newest first."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 50, "offset": 0, "sort": "START_TIME_DESC"}
    return post(api_url, "flow_runs/filter", body)


def wait_for_run(api_url: str, flow_run_id: str, timeout_s: float) -> dict:
    """Poll a flow run until it reaches a final state (or fail after `timeout_s`); returns the run."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = get(api_url, f"flow_runs/{flow_run_id}")
        if run["state_type"] in FINAL_STATES:
            return run
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run['state_type']} after {timeout_s} s"
        time.sleep(1)
