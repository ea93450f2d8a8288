"""Prefect flow for the `report` stage (sections and inputs in `stages.report`).

    dvc repro report
    python -m flows.report --params params.yaml --metrics reports/metrics.json --eval reports/eval \
        --train-metrics reports/train --validated data/validated --shards data/shards --lock dvc.lock \
        --out reports/report.md --plots reports/plots --samples reports/samples

The report is written to `--out` with its plots in `--plots`; the run's artifact is the report itself, so the
Prefect UI shows the same page.
"""

from __future__ import annotations

from pathlib import Path

from flows import runtime
from prefect import flow

from stages.base import load_base
from stages.config import load_section
from stages.git_state import describe
from stages.report import ReportInputs, ReportParams, run_report


@flow(name="report", persist_result=False)
def report_flow(params_path: str, inputs: ReportInputs, out: str, plots: str, samples: str) -> str:
    """Write the versioned report and publish it as the run's Markdown artifact."""
    params = load_section(params_path, "report", ReportParams)
    version = f"code at commit `{describe()}`, profile `{load_base(params_path).profile}`"
    path = run_report(params, inputs, out, plots, samples, version)
    runtime.publish("report", "report", path.read_text())
    return str(path)


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--metrics", default="reports/metrics.json", help="evaluate's metrics JSON")
    parser.add_argument("--eval", default="reports/eval", help="evaluate's per-item outputs and audio")
    parser.add_argument("--train-metrics", default="reports/train", help="train's dvclive directory")
    parser.add_argument("--validated", default="data/validated", help="validated manifests")
    parser.add_argument("--shards", default="data/shards", help="pack output (index.parquet)")
    parser.add_argument("--lock", default="dvc.lock", help="DVC lock file (the train stage's inputs)")
    parser.add_argument("--out", default="reports/report.md", help="output: the Markdown report")
    parser.add_argument("--plots", default="reports/plots", help="output: the report's PNG plots")
    parser.add_argument("--samples", default="reports/samples", help="output: the audio of the report's examples")
    args = parser.parse_args(argv)
    inputs = ReportInputs(metrics=Path(args.metrics), eval_dir=Path(args.eval), train_metrics=Path(args.train_metrics),
                          validated=Path(args.validated), shards=Path(args.shards), lock=Path(args.lock))
    runtime.run_stage_flow(report_flow, "report", args.params, inputs, args.out, args.plots, args.samples)


if __name__ == "__main__":
    main()
