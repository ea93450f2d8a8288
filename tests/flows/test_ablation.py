"""`ttt ablation` end to end on the tiny pipeline corpus: two variants, one seed, two training steps, two test items
per task, a stand-in ASR judge; then a repeat that finds every run finished and only rewrites the table."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.cli import main
from stages.params import profile_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
import pipeline_corpus as corpus  # noqa: E402  (the shared tiny pipeline of the stage tests)


class SilentJudge:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def transcribe_batch(self, clips: Sequence[np.ndarray]) -> list[str]:
        return ["" for _ in clips]


@pytest.mark.slow
def test_ablation_trains_evaluates_and_tabulates_each_variant(tmp_path: Path, prefect_api: str,
                                                               tmp_path_factory: pytest.TempPathFactory,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    built = corpus.build(tmp_path_factory)
    params = profile_params("tiny")
    params["train"].update(micro_batch_size=2, eval_rows=2, eval_every=1, checkpoint_every=1)
    params["evaluate"].update(max_audio_len=16, steps_per_block=2, length_factor=0.1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr("stages.asr_judge.AsrJudge", SilentJudge)
    out = tmp_path / "ablation"
    argv = ["ablation", "--params", str(tmp_path / "params.yaml"), "--variants", "ttt", "ar", "--seeds", "3",
            "--steps", "2", "--items", "1", "--shards", str(built.shards), "--tokenizers", str(built.tokenizers),
            "--validated", str(built.validated), "--audio", str(built.audio), "--out", str(out), "--no-repro"]
    assert main(argv) == 0

    runs = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in runs] == [("ttt", 3), ("ar", 3)]
    assert [r["train_params"]["objective"] for r in runs] == ["ttt", "ar"]
    assert all(r["train_params"]["steps"] == 2 and r["metrics"]["asr"]["items"] == 1 for r in runs)
    table = (out / "ablation.md").read_text()
    assert "| ttt | 1 |" in table and "| ar | 1 |" in table and "| best trivial baseline | 0 |" in table
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("ttt-seed3", "ar-seed3"):
        assert (out / "runs" / name / "eval" / "samples.jsonl").is_file()
        assert not (out / "runs" / name / "model").exists(), "models are deleted unless --keep-models"

    first = (out / "runs" / "ttt-seed3" / "run.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "runs" / "ttt-seed3" / "run.json").stat().st_mtime_ns == first, "a finished run is not redone"
    assert main([*argv[:3], "--variants", "everything"]) == 2
