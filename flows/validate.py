"""Prefect flow for the `validate` stage (logic in `stages.validate`).

    dvc repro validate
    python -m flows.validate --params params.yaml --raw data/raw --audio data/audio --out data/validated \
        --report reports/validation.json --contracts data_contracts

Exits non-zero with a message naming the worst rules when a manifest's quarantine fraction is above
`validate.max_quarantine_fraction`; the report and the quarantine table are written first either way.
"""

from __future__ import annotations

import sys

from flows import runtime
from prefect import flow

from stages.config import load_section
from stages.validate import ValidateParams, ValidationError, ValidationResult, run_validate


def _summary(result: ValidationResult) -> str:
    rows = []
    for name, rep in result.manifests.items():
        rows.append((name, f"{rep.passed}/{rep.checked} passed"))
        rows += [(f"{name}: {rule}", count) for rule, count in sorted(rep.rules.items())]
    return runtime.markdown_table(rows, header=("manifest / rule", "rows"))


@flow(name="validate", persist_result=False)
def validate_flow(params_path: str = "params.yaml", raw_dir: str = "data/raw", audio_dir: str = "data/audio",
                  out_dir: str = "data/validated", report_path: str = "reports/validation.json",
                  contracts_dir: str = "data_contracts") -> dict:
    """Run the data contracts; publish the per-rule quarantine counts."""
    params = load_section(params_path, "validate", ValidateParams)
    try:
        result = run_validate(params, raw_dir, audio_dir, out_dir, report_path, contracts_dir)
    except ValidationError as exc:
        runtime.publish("validate", "validate: FAILED", f"```\n{exc}\n```")
        raise
    runtime.publish("validate", "validate: data contracts", _summary(result))
    return {name: rep.passed for name, rep in result.manifests.items()}


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--raw", default="data/raw", help="fetch output directory")
    parser.add_argument("--audio", default="data/audio", help="synthesize output directory")
    parser.add_argument("--out", default="data/validated", help="directory for the rows that passed + quarantine")
    parser.add_argument("--report", default="reports/validation.json", help="validation report (DVC metric)")
    parser.add_argument("--contracts", default="data_contracts", help="directory of the great-expectations suites")
    args = parser.parse_args(argv)
    try:
        runtime.run_stage_flow(validate_flow, "validate", args.params, args.raw, args.audio, args.out, args.report,
                               args.contracts)
    except ValidationError as exc:
        print(f"validate failed: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
