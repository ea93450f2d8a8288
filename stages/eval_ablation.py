"""The ablation's variants and its one comparison table and plot (the runs themselves: `flows.ablation`).

Variants (DESIGN §1): `ttt` (the method with every strategy), the two baselines under the same code and budget
(`ar`: everything next-token; `nar`: everything masked diffusion), and `ttt` with one train-test strategy switched
off (`no_banom`: p_clean = 0, `no_ppm`: p_prefix = 0, `no_sst`: p_trunc = 0), plus `codec_init`: `ttt` with its
audio-code embeddings started at the codec's centroids (`train.audio_embedding_init`). Each is trained and evaluated with
several seeds; the table gives mean ± standard deviation over seeds of every headline score (`stages.evaluate
.HEADLINES`), the final validation loss and the speed figures, with the trivial baselines in the last row.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from stages.evaluate import HEADLINES
from stages.report import figure, save_figure

VARIANTS: dict[str, dict[str, Any]] = {
    "ttt": {},
    "ar": {"objective": "ar"},
    "nar": {"objective": "nar"},
    "no_banom": {"p_clean": 0.0},
    "no_ppm": {"p_prefix": 0.0},
    "no_sst": {"p_trunc": 0.0},
    "codec_init": {"audio_embedding_init": "codec"},
}
#: Columns besides the headline scores: (task, metric) in the evaluate metrics, or ("train", name) in the final
#: training metrics.
EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (("tts", "judge_word_recall"), ("tts", "judge_word_recall_text_forced"),
                                              ("train", "val/loss"), ("train", "val/text_loss"),
                                              ("train", "val/audio_loss"), ("speed", "audio_tokens_per_s"),
                                              ("speed", "real_time_factor"))


def overrides(variant: str) -> dict[str, Any]:
    """The `train` params a variant changes."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r}; known: {list(VARIANTS)}")
    return dict(VARIANTS[variant])


def _columns() -> list[tuple[str, str]]:
    return [(h.task, h.metric) for h in HEADLINES] + list(EXTRA_COLUMNS)


def _value(run: dict[str, Any], task: str, metric: str) -> float | None:
    source = run["train"] if task == "train" else run["metrics"].get(task, {})
    value = source.get(metric)
    return None if value is None else float(value)


def _cell(values: Sequence[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarize(runs: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """One row per variant (in `VARIANTS` order) with `mean ± std` over its seeds per column, then the baselines.

    `runs`: `{"variant", "seed", "metrics": evaluate's metrics, "train": final training metrics}` each.
    """
    rows = []
    for variant in [v for v in VARIANTS if any(r["variant"] == v for r in runs)]:
        mine = [r for r in runs if r["variant"] == variant]
        row = {"variant": variant, "seeds": len(mine)}
        for task, metric in _columns():
            row[f"{task}/{metric}"] = _cell([v for r in mine if (v := _value(r, task, metric)) is not None])
        rows.append(row)
    if runs:
        baseline = {"variant": "best trivial baseline", "seeds": 0}
        for h in HEADLINES:
            values = runs[0]["metrics"].get(h.task, {})
            baseline[f"{h.task}/{h.metric}"] = f"{h.best_baseline(values):.3f}" if h.metric in values else ""
        rows.append(baseline | {f"{t}/{m}": "" for t, m in EXTRA_COLUMNS})
    return pl.DataFrame(rows)


def bar_height(runs: Sequence[dict[str, Any]], variant: str, task: str, metric: str) -> tuple[float, float]:
    """(mean, std) of one variant's metric over its seeds; NaN (no bar) where no run of it has the metric, e.g. the
    text-forced TTS score of `nar`, which cannot be given a script: a 0 there would read as a perfect score."""
    values = [x for r in runs if r["variant"] == variant and (x := _value(r, task, metric)) is not None]
    if not values:
        return math.nan, 0.0
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot(runs: Sequence[dict[str, Any]], path: str | Path) -> None:
    """One panel per headline score: a bar per variant (mean over seeds, error bar = std), the baseline dashed."""
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in runs)]
    heads = [h for h in HEADLINES if any(h.metric in r["metrics"].get(h.task, {}) for r in runs)]
    ncols = min(4, len(heads)) or 1
    nrows = math.ceil(len(heads) / ncols) or 1
    plt, fig, axes = figure(nrows, ncols, 3.6 * ncols, 3.0 * nrows)
    for ax, h in zip(axes.flat, heads):
        means, stds = zip(*(bar_height(runs, v, h.task, h.metric) for v in variants))
        ax.bar(range(len(variants)), means, yerr=stds, capsize=3)
        ax.axhline(h.best_baseline(runs[0]["metrics"][h.task]), color="gray", linestyle="--", label="baseline")
        ax.set_xticks(range(len(variants)), variants, rotation=45, fontsize=8)
        ax.set_title(f"{h.task} {h.metric} {'↓' if h.lower_is_better else '↑'}", fontsize=9)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    save_figure(plt, fig, path)
