"""`ttt ablation`: train and evaluate TtT, the AR and NAR baselines, TtT without BANOM / PPM / SST and TtT with the
codec embedding init (`stages.eval_ablation.VARIANTS`), several seeds each, and write one comparison table and plot.

    ttt ablation                                    # every variant, seeds 0 1 2, the active profile's params
    ttt ablation --variants ttt ar nar --seeds 0 1 --steps 50 --items 12    # a quicker, smaller grid
    ttt profile gpu && ttt ablation                 # on a GPU: the gpu profile's model, steps and test items

First `dvc repro pack` brings the data and tokenizers up to date (skip with `--no-repro`); every run then trains
with the `train` params of params.yaml changed only as its variant says (`stages.eval_ablation.VARIANTS`; `--steps`
overrides the step count for all), on the same shards and tokenizers, and is evaluated by the `evaluate` stage's
code with its params (`--items` overrides the test items per task). Runs are independent Prefect tasks, one after
another; each leaves `<out>/runs/<variant>-seed<seed>/run.json` (its metrics) and `eval/` (answers and audio), and
a finished run is skipped when the command is repeated, so an interrupted grid resumes. The run's model is deleted
after its evaluation unless `--keep-models`. Results: `<out>/results.json` (every run), `<out>/ablation.md` (the
table) and `<out>/ablation.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from flows import runtime
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from stages import io
from stages.eval_ablation import VARIANTS, overrides, plot, summarize
from stages.lineage import markdown


@dataclasses.dataclass(frozen=True)
class AblationPaths:
    """The pipeline outputs every run reads and where the ablation writes."""

    shards: str
    tokenizers: str
    validated: str
    audio: str
    out: str


@task(name="ablation-run", cache_policy=NO_CACHE, persist_result=False)
def run_one(params_path: str, variant: str, seed: int, steps: int, items: int, paths: AblationPaths,
            keep_model: bool, judge: Any) -> dict[str, Any]:
    """Train one variant with one seed, evaluate it, keep its metrics (skipped when `run.json` already exists)."""
    import torch

    from flows.chat import load_assets
    from stages.config import load_section
    from stages.evaluate import EvaluateParams, run_evaluate
    from stages.pack import PackParams
    from stages.train import TrainParams, run_train

    run_dir = Path(paths.out) / "runs" / f"{variant}-seed{seed}"
    record_path = run_dir / "run.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    train = dataclasses.replace(load_section(params_path, "train", TrainParams), **overrides(variant))
    if steps:
        train = dataclasses.replace(train, steps=steps)
    evaluate = load_section(params_path, "evaluate", EvaluateParams)
    if items:
        evaluate = dataclasses.replace(evaluate, max_items=items)
    model_dir = run_dir / "model"
    train_metrics = run_train(train, seed, paths.shards, paths.tokenizers, model_dir, run_dir / "train",
                              progress=False)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if evaluate.device == "auto" else evaluate.device
    assets = load_assets(model_dir, paths.tokenizers, device)
    metrics = run_evaluate(evaluate, load_section(params_path, "pack", PackParams), seed, assets, judge,
                           paths.shards, paths.validated, paths.audio, run_dir / "eval", run_dir / "metrics.json")
    if not keep_model:
        shutil.rmtree(model_dir)
    record = {"variant": variant, "seed": seed, "train_params": dataclasses.asdict(train), "train": train_metrics,
              "metrics": metrics}
    io.write_json(record, record_path)
    return record


@flow(name="ablation", persist_result=False)
def ablation_flow(params_path: str, variants: list[str], seeds: list[int], steps: int, items: int,
                  paths: AblationPaths, keep_models: bool) -> str:
    """Every (variant, seed) run, then the table and the plot."""
    from stages.asr_judge import AsrJudge

    judge = AsrJudge()
    runs = [run_one(params_path, v, s, steps, items, paths, keep_models, judge) for v in variants for s in seeds]
    out = Path(paths.out)
    io.write_json(runs, out / "results.json")
    table = markdown(summarize(runs))
    io.write_text(f"# Ablation\n\nVariants {', '.join(variants)}; seeds {', '.join(map(str, seeds))}; "
                  f"mean ± std over seeds.\n\n{table}\n\n![ablation](ablation.png)\n", out / "ablation.md")
    plot(runs, out / "ablation.png")
    runtime.publish("ablation", "ablation", table)
    return table


def run(args: argparse.Namespace) -> int:
    """`ttt ablation` (arguments in `flows.cli`): 0 when every run finished and the table is written."""
    variants = args.variants or list(VARIANTS)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or args.steps < 0 or args.items < 0 or not args.seeds:
        print(f"ttt ablation: error: variants must be of {list(VARIANTS)} (unknown: {unknown}), --steps and --items "
              ">= 0, at least one seed", file=sys.stderr)
        return 2
    if not args.no_repro:
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", "pack"], check=False)
        if done.returncode != 0:
            print("ttt ablation: error: `dvc repro pack` failed; the ablation needs the packed shards",
                  file=sys.stderr)
            return 2
    paths = AblationPaths(args.shards, args.tokenizers, args.validated, args.audio, args.out)
    table = runtime.run_stage_flow(ablation_flow, "ablation", args.params, variants, args.seeds, args.steps,
                                   args.items, paths, args.keep_models)
    print(table)
    return 0
