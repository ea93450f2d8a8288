"""report: one Markdown file (+ PNG plots) that says what this version of the pipeline produced and how it changed.

    dvc repro report
    python -m flows.report --params params.yaml --metrics reports/metrics.json --eval reports/eval \\
        --train-metrics reports/train --validated data/validated --shards data/shards --lock dvc.lock \\
        --out reports/report.md --plots reports/plots --samples reports/samples

Versioned: the report and its plots are committed with the metrics (DVC `cache: false`), so every commit carries
the report of its own run, and each report shows the change against the previous commit (`dvc metrics diff --md`
and `dvc params diff --md` against `diff_rev`, through the DVC CLI). Sections:

1. headline: every evaluated score beside its strongest trivial baseline (and ceiling), marked when it beats it;
2. all metrics per task (`reports/metrics.json`) and a bar chart;
3. training loss curves from dvclive's per-step TSV files;
4. metrics and params diff against the previous version;
5. data: audio hours per split and kind, utterances per voice and task, quarantined rows per manifest and rule
   (the validate stage's `quarantine.parquet`);
6. lineage: documents per split and task, the leak check for val and test, the train stage's locked inputs;
7. examples: a few answers per task with links to the model's speech and the codec round trip of the reference;
   those few WAV files are copied to the samples folder (`--samples`, committed with the report), so the report
   plays them in any checkout (the evaluate stage's own `reports/eval/` is a DVC output, absent from a clone until it is pulled).

Every input but the metrics is optional: a missing one is named in its section instead of failing the report,
so a partial pipeline still reports what it has. `dvc.yaml` declares the metrics (evaluate's output, so the stage
runs after train and evaluate), the manifests and the shard index; the dvclive curves and evaluate's per-item
outputs are read where those stages leave them but not declared, because a fresh clone has neither before its
first run (they change only together with the declared metrics).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from stages import io
from stages.atomic import atomic_write
from stages.eval_data import EVAL_TASKS
from stages.evaluate import HEADLINES
from stages.lineage import MANIFESTS, Lineage, LineageError, locked_stage, markdown

PLOTS = ("metrics.png", "loss.png")


@dataclass(frozen=True)
class ReportParams:
    """`report` section of params.yaml."""

    diff_rev: str = "HEAD"
    """Revision the metrics and params are compared with (the previous committed version)."""
    examples: int = 3
    """Example answers shown (with audio links for spoken tasks) per task."""

    def __post_init__(self) -> None:
        if self.examples < 0 or not self.diff_rev:
            raise ValueError("examples must be >= 0 and diff_rev non-empty")


@dataclass(frozen=True)
class ReportInputs:
    """Where everything the report reads lives (the paths `dvc.yaml` passes)."""

    metrics: Path
    eval_dir: Path
    train_metrics: Path
    validated: Path
    shards: Path
    lock: Path


Diff = Callable[[str, str], str]


def dvc_diff(kind: str, rev: str) -> str:
    """`dvc {metrics,params} diff --md rev` (workspace against `rev`), or a line saying why there is none."""
    try:
        out = subprocess.run([sys.executable, "-m", "dvc", kind, "diff", "--md", rev], capture_output=True,
                             text=True, check=False, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"_{kind} diff not available: {exc}_"
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["dvc failed"])[-1]
        return f"_{kind} diff against {rev} not available: {reason}_"
    table = [line for line in out.stdout.splitlines() if line.startswith("|")]
    return "\n".join(table) if len(table) > 2 else f"_no {kind} changed against {rev}_"


# --- sections ----------------------------------------------------------------------------------------------------
def headline_section(metrics: dict[str, dict[str, float]]) -> str:
    rows = ["| task | metric | model | best baseline | ceiling | beats baseline |", "|---|---|---|---|---|---|"]
    for h in HEADLINES:
        values = metrics.get(h.task, {})
        if h.metric not in values:
            continue
        arrow = "↓" if h.lower_is_better else "↑"
        ceiling = f"{values[h.ceiling]:.3f}" if h.ceiling and h.ceiling in values else ""
        mark = "**yes**" if h.beats_baseline(values) else "no"
        rows.append(f"| {h.task} | {h.label} {arrow} | {values[h.metric]:.3f} | {h.best_baseline(values):.3f} | "
                    f"{ceiling} | {mark} |")
    return "\n".join(rows)


def metrics_section(metrics: dict[str, dict[str, float]]) -> str:
    parts = []
    order = [*EVAL_TASKS, "speed"]
    for task, values in sorted(metrics.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        table = pl.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]})
        parts.append(f"**{task}**\n\n{markdown(table)}")
    return "\n\n".join(parts)


def read_curves(train_dir: Path) -> dict[str, pl.DataFrame]:
    """dvclive's per-step series (`plots/metrics/<group>/<name>.tsv`) as `{"group/name": frame(step, value)}`."""
    root = train_dir / "plots" / "metrics"
    curves = {}
    for tsv in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        df = pl.read_csv(tsv, separator="\t")
        name = tsv.relative_to(root).with_suffix("").as_posix()
        curves[name] = df.select(pl.col("step"), pl.col(df.columns[-1]).alias("value"))
    return curves


def figure(nrows: int, ncols: int, width: float, height: float):
    """`(pyplot, fig, axes[nrows][ncols])` on the non-interactive backend (stages run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)


def save_figure(plt, fig, path: str | Path) -> None:
    """Write a PNG atomically, without the matplotlib version stamp (same data, same bytes), and close it."""
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    finally:
        plt.close(fig)


def plot_losses(curves: dict[str, pl.DataFrame], path: Path) -> bool:
    """Loss curves (every `*loss` series), train and val in one panel per loss; False when there are none."""
    losses = sorted({name.split("/")[-1] for name in curves if name.endswith("loss")})
    if not losses:
        return False
    plt, fig, axes = figure(1, len(losses), 4.2 * len(losses), 3.2)
    for ax, loss in zip(axes[0], losses):
        for name, df in curves.items():
            if name.split("/")[-1] == loss:
                ax.plot(df["step"], df["value"], marker="." if df.height < 30 else None, label=name.split("/")[0])
        ax.set_title(loss)
        ax.set_xlabel("step")
        ax.legend()
    save_figure(plt, fig, path)
    return True


def plot_metrics(metrics: dict[str, dict[str, float]], path: Path) -> bool:
    """Headline scores beside their best baseline, error rates and accuracies in separate panels."""
    groups = {True: [], False: []}
    for h in HEADLINES:
        values = metrics.get(h.task, {})
        if h.metric in values:
            groups[h.lower_is_better].append((f"{h.task}\n{h.metric}", values[h.metric], h.best_baseline(values)))
    panels = [(lower, rows) for lower, rows in groups.items() if rows]
    if not panels:
        return False
    plt, fig, axes = figure(1, len(panels), 5.0 * len(panels), 3.6)
    for ax, (lower, rows) in zip(axes[0], panels):
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r[1] for r in rows], 0.4, label="model")
        ax.bar([i + 0.2 for i in x], [r[2] for r in rows], 0.4, label="best baseline", color="lightgray")
        ax.set_xticks(list(x), [r[0] for r in rows], fontsize=8)
        ax.set_title("error rate (lower is better)" if lower else "accuracy / F1 (higher is better)")
        ax.legend()
    save_figure(plt, fig, path)
    return True


def data_section(validated: Path, lineage: Lineage | None) -> str:
    parts = []
    audio_file = validated / "audio.parquet"
    if audio_file.is_file():
        audio = pl.read_parquet(audio_file, columns=["split", "kind", "duration_s"])
        hours = (audio.group_by("split", "kind").agg(clips=pl.len(), hours=(pl.col("duration_s").sum() / 3600))
                 .sort("split", "kind"))
        parts.append(f"Audio: {audio.height} clips, {audio['duration_s'].sum() / 3600:.2f} h.\n\n{markdown(hours)}")
    else:
        parts.append(f"_no audio manifest at {audio_file}_")
    if lineage is not None:
        rows = pl.concat([lineage.contents(split=s) for s in ("train", "val", "test")])
        per_voice = (rows.filter(pl.col("voice").is_not_null()).group_by("voice", "task")
                     .agg(pl.col("utt_id").n_unique().alias("n"))
                     .pivot(on="task", index="voice", values="n", sort_columns=True).fill_null(0).sort("voice"))
        parts.append(f"Utterances per voice and task (packed documents, all splits):\n\n{markdown(per_voice)}")
    quarantine_file = validated / "quarantine.parquet"
    if quarantine_file.is_file():
        quarantine = pl.read_parquet(quarantine_file, columns=["manifest", "row_index", "rule"])
        manifests = pl.DataFrame([{"manifest": name, "passed": pl.scan_parquet(validated / file).select(pl.len())
                                   .collect().item(),
                                   "quarantined": quarantine.filter(pl.col("manifest") == name)["row_index"].n_unique()}
                                  for name, file in sorted(MANIFESTS.items()) if (validated / file).is_file()])
        rules = quarantine.group_by("manifest", "rule").agg(rows=pl.col("row_index").n_unique()).sort("manifest",
                                                                                                      "rule")
        rules_md = markdown(rules) if rules.height else "_no rule quarantined a row_"
        parts.append(f"Validation: rows that passed and rows quarantined per manifest\n\n{markdown(manifests)}\n\n"
                     f"Quarantined rows by rule:\n\n{rules_md}")
    else:
        parts.append(f"_no quarantine table at {quarantine_file}_")
    return "\n\n".join(parts)


def lineage_section(lineage: Lineage | None, lock: Path) -> str:
    if lineage is None:
        return "_no shard index or manifests: run the pipeline up to `dvc repro pack`_"
    parts = [f"Documents per split and task:\n\n{markdown(lineage.overview())}"]
    for split in ("val", "test"):
        leaks = lineage.leaks(split)
        verdict = ("no leak: no training document carries a fact, utterance, sample or sentence of the "
                   f"{split} split" if leaks.is_empty()
                   else f"**LEAK**: {leaks.height} training document(s) carry {split} data\n\n"
                        f"{markdown(leaks.group_by('rule').len().sort('rule'))}")
        parts.append(f"Leak check ({split}, `ttt lineage leaks --split {split}`): {verdict}")
    try:
        locked = locked_stage(lock, "train")
        hashes = pl.DataFrame([{"kind": k, "path": p, "md5": h} for k in ("deps", "outs")
                               for p, h in locked[k].items() if p.startswith(("data/", "models/"))])
        parts.append(f"The checkpoint and the data it was trained on (`{lock}`, stage train):\n\n{markdown(hashes)}")
    except LineageError as exc:
        parts.append(f"_{exc}_")
    return "\n\n".join(parts)


def _clip(text: str, chars: int = 160) -> str:
    """A long (runaway) answer cut to `chars` characters, so one example cannot swamp the table."""
    return text if len(text) <= chars else text[:chars].rstrip() + " …"


def examples_section(eval_dir: Path, report_dir: Path, samples_dir: Path, per_task: int) -> str:
    """A table of the first `per_task` answers per task; their audio is copied to `samples_dir/<folder>/`."""
    samples = eval_dir / "samples.jsonl"
    if not samples.is_file():
        return f"_no per-item outputs at {samples}_"
    records = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]

    def link(relative: str | None, label: str) -> str:
        if not relative:
            return ""
        source = io.resolve_inside(eval_dir, relative)  # samples.jsonl names files under the eval folder only
        if not source.is_file():
            return f"{label}: _missing {relative}_"
        kept = io.write_bytes(source.read_bytes(), samples_dir / source.parent.name / source.name)
        return f"[{label}]({Path(os.path.relpath(kept, report_dir)).as_posix()})"

    parts = []
    for task in dict.fromkeys(r["task"] for r in records):
        rows = []
        for r in [r for r in records if r["task"] == task][:per_task]:
            audio = " ".join(filter(None, [link(r.get("wav"), "model"), link(r.get("forced_wav"), "text forced"),
                                           link(r.get("ceiling_wav"), "reference")]))
            rows.append({"reference": r["reference"], "model text": _clip(r["text"]),
                         "judge heard": _clip(r.get("judge", "")),
                         "judge heard (text forced)": _clip(r.get("forced_judge", "")), "audio": audio})
        df = pl.DataFrame(rows)
        parts.append(f"**{task}**\n\n{markdown(df.select([c for c in df.columns if df[c].str.len_chars().sum()]))}")
    return "\n\n".join(parts)


def _eval_summary(eval_dir: Path) -> dict:
    path = eval_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def render(params: ReportParams, inputs: ReportInputs, report_path: Path, plots_dir: Path, samples_dir: Path,
           diff: Diff, version: str) -> str:
    """The report's Markdown (plots and example audio are written to `plots_dir` / `samples_dir` as side effects)."""
    metrics = json.loads(inputs.metrics.read_text())
    try:
        lineage: Lineage | None = Lineage(inputs.validated, inputs.shards)
    except LineageError:
        lineage = None
    summary = _eval_summary(inputs.eval_dir)
    report_dir = report_path.parent
    curves = read_curves(inputs.train_metrics)

    def image(name: str, drawn: bool, missing: str) -> str:
        rel = Path(os.path.relpath(plots_dir / name, report_dir)).as_posix()
        return f"![{name}]({rel})" if drawn else f"_{missing}_"

    objective = summary.get("objective", "unknown")
    no_curves = f"no dvclive loss curves in {inputs.train_metrics}"
    items = ", ".join(f"{t} {n}" for t, n in summary.get("items", {}).items())
    title = (f"# TtT pipeline report\n\nVersion: {version}. Checkpoint objective: `{objective}`. Test items per "
             f"task: {items or 'unknown'}. Compared with `{params.diff_rev}` below.")
    headline = (f"## Headline: model vs trivial baselines\n\n{headline_section(metrics)}\n\n"
                "A baseline is the same scorer applied to a trivial answer (empty or constant transcript, silence, "
                "random codes, the most common training answer, the majority class, and the best constant "
                "transcript: the one output, chosen on the training transcripts, that scores best without "
                "listening); the ceiling is the judge on the reference speech round-tripped through the codec.")
    drawn = plot_metrics(metrics, plots_dir / "metrics.png")
    all_metrics = f"## All metrics\n\n{image('metrics.png', drawn, 'no scores')}\n\n{metrics_section(metrics)}"
    training = f"## Training\n\n{image('loss.png', plot_losses(curves, plots_dir / 'loss.png'), no_curves)}"
    changes = (f"## Changes against {params.diff_rev}\n\nMetrics:\n\n{diff('metrics', params.diff_rev)}\n\n"
               f"Params:\n\n{diff('params', params.diff_rev)}")
    sections = [title, headline, all_metrics, training, changes,
                f"## Data\n\n{data_section(inputs.validated, lineage)}",
                f"## Lineage\n\n{lineage_section(lineage, inputs.lock)}",
                f"## Examples\n\n{examples_section(inputs.eval_dir, report_dir, samples_dir, params.examples)}"]
    return "\n\n".join(sections) + "\n"


def run_report(params: ReportParams, inputs: ReportInputs, report_path: str | Path, plots_dir: str | Path,
               samples_dir: str | Path, version: str, diff: Diff = dvc_diff) -> Path:
    """Write the report (and its plots and example audio); returns its path."""
    out, plots, samples = Path(report_path), Path(plots_dir), Path(samples_dir)
    for name in PLOTS:  # a plot this version cannot draw must not survive from an older one
        (plots / name).unlink(missing_ok=True)
    shutil.rmtree(samples, ignore_errors=True)  # nor an example this version no longer shows
    return io.write_text(render(params, inputs, out, plots, samples, diff, version), out)

