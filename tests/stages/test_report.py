"""The report renders every section from fixture inputs, links audio and plots that exist, and degrades gracefully."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lineage_corpus
import numpy as np
import polars as pl
import pytest
import soundfile as sf
import yaml

from stages import io
from stages.report import ReportInputs, ReportParams, dvc_diff, run_report

SECTIONS = ["Headline: model vs trivial baselines", "All metrics", "Training", "Changes against HEAD", "Data",
            "Lineage", "Examples"]
METRICS = {
    "asr": {"wer": 0.4, "cer": 0.2, "baseline_empty_wer": 1.0, "baseline_constant_wer": 0.9,
            "baseline_empty_cer": 1.0, "baseline_constant_cer": 0.8, "items": 2},
    "tts": {"judge_wer": 0.7, "baseline_silence_wer": 1.0, "baseline_random_codes_wer": 0.95,
            "ceiling_codec_wer": 0.3, "items": 1},
    "qa": {"text_accuracy": 0.1, "spoken_accuracy": 0.3, "baseline_constant_accuracy": 0.2, "items": 2},
    "speed": {"answers": 3, "answers_with_audio": 1, "real_time_factor": 1.5},
}


def fixture_inputs(root: Path, leak: str | None = None) -> ReportInputs:
    validated, shards = lineage_corpus.write(root, leak)
    io.write_json(METRICS, root / "metrics.json")
    eval_dir = root / "eval"
    for rel in ("audio/tts/smp-a.wav", "audio/tts_forced/smp-a.wav", "audio/tts_reference/smp-a.wav"):
        (eval_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(eval_dir / rel), np.zeros(1600, np.float32), 16000)
    records = [{"task": "asr", "reference": "the cat", "text": "the hat"},
               {"task": "asr", "reference": "a dog", "text": "a dog"},
               {"task": "tts", "reference": "red", "text": "red", "judge": "read", "wav": "audio/tts/smp-a.wav",
                "forced_judge": "reed", "forced_wav": "audio/tts_forced/smp-a.wav",
                "ceiling_wav": "audio/tts_reference/smp-a.wav"}]
    io.write_text("".join(json.dumps(r) + "\n" for r in records), eval_dir / "samples.jsonl")
    io.write_json({"objective": "ttt", "items": {"asr": 2, "tts": 1}}, eval_dir / "summary.json")
    train = root / "train" / "plots" / "metrics"
    io.write_text("step\tloss\n0\t5.0\n1\t4.0\n2\t3.5\n", train / "train" / "loss.tsv")
    io.write_text("step\tloss\n0\t5.2\n2\t3.9\n", train / "val" / "loss.tsv")
    io.write_text("step\ttext_loss\n0\t2.0\n2\t1.0\n", train / "train" / "text_loss.tsv")
    io.write_parquet(pl.DataFrame({"manifest": ["audio", "audio", "samples"], "row_index": [3, 3, 9],
                                   "row_id": ["u-x", "u-x", "smp-x"], "rule": ["audio.decodes", "audio.mono",
                                                                               "samples.parent_quarantined"],
                                   "detail": ["", "", ""]}), validated / "quarantine.parquet")
    lock = root / "dvc.lock"
    lock.write_text(yaml.safe_dump({"stages": {"train": {"deps": [{"path": "data/shards", "md5": "abc.dir"}],
                                                         "outs": [{"path": "models/ttt", "md5": "def.dir"}]}}}))
    return ReportInputs(metrics=root / "metrics.json", eval_dir=eval_dir, train_metrics=root / "train",
                        validated=validated, shards=shards, lock=lock)


def fake_diff(kind: str, rev: str) -> str:
    return f"| {kind} | {rev} |\n|---|---|\n| changed | yes |"


def render(tmp_path: Path, inputs: ReportInputs) -> str:
    out = tmp_path / "reports" / "report.md"
    run_report(ReportParams(examples=1), inputs, out, tmp_path / "reports" / "plots", tmp_path / "reports" / "samples",
               "test version", fake_diff)
    return out.read_text()


def test_report_has_every_section_with_numbers_baselines_and_links(tmp_path: Path) -> None:
    text = render(tmp_path, fixture_inputs(tmp_path / "in"))
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == SECTIONS
    assert "Version: test version. Checkpoint objective: `ttt`" in text
    assert "| asr | ASR word error rate ↓ | 0.400 | 0.900 |  | **yes** |" in text
    assert "| tts | TTS intelligibility (judge WER) ↓ | 0.700 | 0.950 | 0.300 | **yes** |" in text
    assert "| qa | spoken QA: written answer accuracy ↑ | 0.100 | 0.200 |  | no |" in text
    assert "| metrics | HEAD |" in text and "| params | HEAD |" in text
    assert "| audio | audio.decodes | 1 |" in text and "| samples | samples.parent_quarantined | 1 |" in text
    assert "| audio | 6 | 1 |" in text and "| facts | 2 | 0 |" in text, "passed and quarantined rows per manifest"
    assert "| flite:awb | 1 | 1 | 0 |" in text and "| procedural:bell | 0 | 0 | 2 |" in text, "per voice and task"
    assert "no leak" in text and "| deps | data/shards | abc.dir |" in text
    assert "the hat" in text and "a dog" not in text, "one example per task"
    assert "| red | red | read | reed |" in text, "what the judge heard, free and with the text forced"
    report_dir = tmp_path / "reports"
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert {Path(link).suffix for link in links} == {".png", ".wav"}
    for link in links:
        target = report_dir / link
        assert target.is_file(), link
    wavs = sorted(link for link in links if link.endswith(".wav"))
    assert wavs == ["samples/tts/smp-a.wav", "samples/tts_forced/smp-a.wav", "samples/tts_reference/smp-a.wav"], \
        "audio kept beside the report"
    assert (report_dir / wavs[0]).read_bytes() == (tmp_path / "in" / "eval" / "audio/tts/smp-a.wav").read_bytes()
    for plot in ("metrics.png", "loss.png"):
        assert (report_dir / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_flags_a_leak(tmp_path: Path) -> None:
    text = render(tmp_path, fixture_inputs(tmp_path / "in", leak="fact"))
    assert "**LEAK**: 1 training document(s) carry test data" in text


def test_missing_optional_inputs_are_named_not_fatal(tmp_path: Path) -> None:
    inputs = fixture_inputs(tmp_path / "in")
    (tmp_path / "reports" / "plots").mkdir(parents=True)
    (tmp_path / "reports" / "plots" / "loss.png").write_bytes(b"stale")
    bare = ReportInputs(metrics=inputs.metrics, eval_dir=tmp_path / "none", train_metrics=tmp_path / "none",
                        validated=tmp_path / "none", shards=tmp_path / "none",
                        lock=tmp_path / "none.lock")
    text = render(tmp_path, bare)
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == SECTIONS
    for note in ("no dvclive loss curves", "no audio manifest", "no quarantine table", "no shard index",
                 "no per-item outputs"):
        assert note in text
    assert not (tmp_path / "reports" / "plots" / "loss.png").exists(), "a plot this version cannot draw is removed"
    assert not (tmp_path / "reports" / "samples").exists(), "no examples, no kept audio"
    assert (tmp_path / "reports" / "plots" / "metrics.png").is_file()


@pytest.mark.parametrize("kind", ["metrics", "params"])
def test_dvc_diff_outside_a_repository_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.chdir(tmp_path)
    line = dvc_diff(kind, "HEAD")
    assert line.startswith(f"_{kind} diff against HEAD not available") and line.endswith("_")


def test_an_example_path_outside_the_eval_folder_is_refused(tmp_path: Path) -> None:
    inputs = fixture_inputs(tmp_path / "in")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF")
    record = {"task": "tts", "reference": "red", "text": "red", "wav": "../../secret.wav"}
    io.write_text(json.dumps(record) + "\n", inputs.eval_dir / "samples.jsonl")
    with pytest.raises(ValueError, match="secret.wav"):
        render(tmp_path, inputs)
    assert not (tmp_path / "reports" / "samples").exists()
