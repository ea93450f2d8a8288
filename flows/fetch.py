"""Prefect flow for the `fetch` stage (logic in `stages.fetch`).

    dvc repro fetch
    python -m flows.fetch --params params.yaml --out data/raw
"""

from __future__ import annotations

from flows import runtime
from prefect import flow

from stages.base import load_base
from stages.config import load_section
from stages.fetch import FetchParams, run_fetch


@flow(name="fetch", persist_result=False)
def fetch_flow(params_path: str = "params.yaml", out_dir: str = "data/raw") -> dict:
    """Build the source corpus manifests."""
    base = load_base(params_path)
    params = load_section(params_path, "fetch", FetchParams)
    result = run_fetch(params, base.seed, out_dir)
    rows = [("source", params.source), ("facts", result.facts), ("utterances", result.utterances),
            *((f"samples: {task}", n) for task, n in result.samples.items()), ("output", runtime.relpath(out_dir))]
    runtime.publish("fetch", "fetch: source corpus", runtime.markdown_table(rows))
    return {"facts": result.facts, "utterances": result.utterances, "samples": result.samples}


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--out", default="data/raw", help="output directory for the manifests")
    args = parser.parse_args(argv)
    runtime.run_stage_flow(fetch_flow, "fetch", args.params, args.out)


if __name__ == "__main__":
    main()
