"""Live training metrics: dvclive files for DVC (`dvc plots show`, `dvc metrics show/diff`) and a rich progress bar.

`metrics_dir` (the stage's `reports/train/`) receives dvclive's layout: `metrics.json` (the latest value of every
metric plus `step`; declared as the stage's metrics in dvc.yaml) and `plots/metrics/<name>.tsv` (one row per logged
step; declared as plots). dvclive runs with `dvcyaml=None` and `save_dvc_exp=False`: dvc.yaml is the repository's,
and experiments are DVC's business, not the training loop's.

A resumed run re-logs the steps after its checkpoint, so the history is first cut back to the checkpoint's step:
the curves of a killed-and-resumed run are the curves of an uninterrupted one, with no duplicate steps.
"""

from __future__ import annotations

from pathlib import Path

from stages.atomic import atomic_write

PLOTS_SUBDIR = Path("plots") / "metrics"


def truncate_history(metrics_dir: str | Path, last_step: int) -> None:
    """Drop every logged row after `last_step` from dvclive's per-metric TSV files (header kept)."""
    root = Path(metrics_dir) / PLOTS_SUBDIR
    if not root.is_dir():
        return
    for tsv in root.rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        if not lines:
            continue
        step_col = lines[0].rstrip("\n").split("\t").index("step")
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[step_col]) <= last_step]
        atomic_write(tsv, lambda tmp: tmp.write_text("".join(kept)))


class MetricsLog:
    """dvclive writer for one run (rank 0 only); `resume_step` continues a run killed after that step."""

    def __init__(self, metrics_dir: str | Path, resume_step: int | None) -> None:
        from dvclive import Live  # imports DVC: seconds, so only when a run actually logs

        if resume_step is not None:
            truncate_history(metrics_dir, resume_step)
        self.live = Live(dir=str(metrics_dir), resume=resume_step is not None, dvcyaml=None, save_dvc_exp=False,
                         report=None)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Log `values` (names like `train/loss`, `val/audio_loss`) at `step` and flush to disk."""
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, value)
        self.live.next_step()

    def close(self) -> None:
        self.live.end()


class ProgressBar:
    """A rich progress bar over optimizer steps that shows the latest loss, validation loss and tokens/s."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)  # here, so GPU boxes with torch + transformers only import us

        self._progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), TextColumn("{task.fields[status]}"), disable=not enabled)
        self._task = self._progress.add_task("train", total=total, completed=start, status="")
        self._fields: dict[str, str] = {}
        self._progress.start()

    def update(self, step: int, **fields: float) -> None:
        self._fields.update({k: f"{v:.3g}" for k, v in fields.items()})
        self._progress.update(self._task, completed=step,
                              status=" ".join(f"{k} {v}" for k, v in self._fields.items()))

    def close(self) -> None:
        self._progress.stop()
