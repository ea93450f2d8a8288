"""Prefect flow for the `train` stage (logic, launch commands and the multi-GPU recipe in `stages.train`).

    dvc repro train
    python -m flows.train --params params.yaml --shards data/shards --tokenizer models/tokenizers \
        --out models/ttt --metrics reports/train

One process: the CPU (tiny profile) or one GPU (gpu profile). Several GPUs: the `deepspeed` launcher runs
`stages.train` directly (see its docstring); Prefect does not start one flow per rank.
"""

from __future__ import annotations

from flows import runtime
from prefect import flow

from stages.base import load_base
from stages.config import load_section
from stages.train import TrainParams, run_train


@flow(name="train", persist_result=False)
def train_flow(params_path: str = "params.yaml", shards_dir: str = "data/shards",
               tokenizer_dir: str = "models/tokenizers", out_dir: str = "models/ttt",
               metrics_dir: str = "reports/train") -> dict:
    """Train the TtT model (or resume the last checkpoint of this config) and export it."""
    base = load_base(params_path)
    params = load_section(params_path, "train", TrainParams)
    metrics = run_train(params, base.seed, shards_dir, tokenizer_dir, out_dir, metrics_dir)
    rows = [("objective", params.objective), ("model", params.qwen_dir or params.model), ("steps", params.steps),
            *((name, f"{value:.4g}") for name, value in sorted(metrics.items())),
            ("output", runtime.relpath(out_dir)), ("metrics", runtime.relpath(metrics_dir))]
    runtime.publish("train", "train: TtT model", runtime.markdown_table(rows))
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--shards", default="data/shards", help="pack output (train/ and val/ shards)")
    parser.add_argument("--tokenizer", default="models/tokenizers", help="tokenizers output (text/token_spec.json)")
    parser.add_argument("--out", default="models/ttt", help="output: HF model, trainer state, checkpoints")
    parser.add_argument("--metrics", default="reports/train", help="output: dvclive metrics and plots")
    args = parser.parse_args(argv)
    runtime.run_stage_flow(train_flow, "train", args.params, args.shards, args.tokenizer, args.out, args.metrics)


if __name__ == "__main__":
    main()
