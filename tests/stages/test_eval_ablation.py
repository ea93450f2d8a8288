"""The ablation's variants change only what they name, and its table aggregates seeds per variant."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from stages.eval_ablation import VARIANTS, bar_height, overrides, plot, summarize
from stages.train import TrainParams


def run(variant: str, seed: int, wer: float, val_loss: float) -> dict:
    return {"variant": variant, "seed": seed, "train": {"val/loss": val_loss},
            "metrics": {"asr": {"wer": wer, "cer": 0.5, "baseline_empty_wer": 1.0, "baseline_constant_wer": 0.9,
                                "baseline_empty_cer": 1.0, "baseline_constant_cer": 0.8},
                        "speed": {"audio_tokens_per_s": 100.0 + seed}}}


def test_variants_switch_off_exactly_one_thing() -> None:
    base = TrainParams()
    for name in VARIANTS:
        changed = dataclasses.replace(base, **overrides(name))
        diff = {f.name for f in dataclasses.fields(base) if getattr(base, f.name) != getattr(changed, f.name)}
        assert len(diff) == (0 if name == "ttt" else 1), name
    assert dataclasses.replace(base, **overrides("no_sst")).p_trunc == 0.0
    assert dataclasses.replace(base, **overrides("nar")).objective == "nar"
    assert dataclasses.replace(base, **overrides("codec_init")).audio_embedding_init == "codec"
    with pytest.raises(ValueError, match="unknown ablation variant"):
        overrides("no_everything")


def test_summary_gives_mean_and_std_over_seeds_in_variant_order_and_the_baseline() -> None:
    runs = [run("ar", 0, 0.6, 3.0), run("ttt", 0, 0.4, 2.0), run("ttt", 1, 0.2, 2.2)]
    table = summarize(runs)
    assert table["variant"].to_list() == ["ttt", "ar", "best trivial baseline"]
    ttt = table.row(0, named=True)
    assert ttt["seeds"] == 2 and ttt["asr/wer"] == "0.300 ± 0.141" and ttt["train/val/loss"] == "2.100 ± 0.141"
    assert ttt["speed/audio_tokens_per_s"] == "100.500 ± 0.707" and ttt["qa/text_accuracy"] == ""
    assert table.row(1, named=True)["asr/wer"] == "0.600", "one seed: no spread"
    assert table.row(2, named=True)["asr/wer"] == "0.900" and table.row(2, named=True)["train/val/loss"] == ""


def test_plot_writes_a_png(tmp_path: Path) -> None:
    plot([run("ttt", 0, 0.4, 2.0), run("nar", 0, 0.7, 2.5)], tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_a_variant_without_the_metric_gets_no_bar_rather_than_a_zero() -> None:
    runs = [run("ttt", 0, 0.4, 2.0), run("ttt", 1, 0.2, 2.0), run("nar", 0, 0.7, 2.5)]
    mean, std = bar_height(runs, "ttt", "asr", "wer")
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1414, abs=1e-4)
    assert bar_height(runs, "nar", "asr", "wer") == (0.7, 0.0)
    mean, std = bar_height(runs, "nar", "qa", "text_accuracy")
    assert math.isnan(mean) and std == 0.0
