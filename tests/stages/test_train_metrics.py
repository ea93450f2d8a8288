"""Tests for stages/train_metrics.py: dvclive output DVC can read, and history cut back for a resumed run."""

from __future__ import annotations

import json

from stages.train_metrics import PLOTS_SUBDIR, MetricsLog, truncate_history


def steps_in(tsv) -> list[int]:
    lines = tsv.read_text().splitlines()
    col = lines[0].split("\t").index("step")
    return [int(line.split("\t")[col]) for line in lines[1:]]


def test_a_resumed_log_continues_after_the_checkpoint_without_duplicates(tmp_path):
    log = MetricsLog(tmp_path, resume_step=None)
    for step in range(6):
        log.log(step, {"train/loss": 10.0 - step, **({"val/loss": 9.0 - step} if step % 2 == 0 else {})})
    log.close()  # a killed run got to step 5; its last checkpoint was step 3
    resumed = MetricsLog(tmp_path, resume_step=3)
    for step in range(4, 8):
        resumed.log(step, {"train/loss": 20.0 - step})
    resumed.close()
    assert steps_in(tmp_path / PLOTS_SUBDIR / "train" / "loss.tsv") == list(range(8))
    assert steps_in(tmp_path / PLOTS_SUBDIR / "val" / "loss.tsv") == [0, 2]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["step"] == 7 and summary["train"]["loss"] == 13.0


def test_truncate_history_keeps_headers_of_empty_curves(tmp_path):
    tsv = tmp_path / PLOTS_SUBDIR / "val" / "loss.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tloss\n5\t1.0\n")
    truncate_history(tmp_path, 3)
    assert tsv.read_text() == "step\tloss\n"
