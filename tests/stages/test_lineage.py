"""Lineage queries on a hand-made index and manifests; the leak check catches each kind of planted leak."""

from __future__ import annotations

from pathlib import Path

import lineage_corpus as corpus
import pytest
import yaml

from flows.cli import main
from stages.lineage import Lineage, LineageError, locked_stage, markdown


@pytest.fixture()
def clean(tmp_path: Path) -> Lineage:
    return Lineage(*corpus.write(tmp_path))


def test_shard_contents_name_samples_voices_and_texts(clean: Lineage) -> None:
    rows = clean.contents(shard="train/shard-00000.safetensors")
    assert rows["doc_id"].unique().sort().to_list() == ["d-il", "d-qa1"]
    qa = rows.filter(rows["doc_id"] == "d-qa1").sort("utt_id")
    assert qa.select("utt_id", "voice", "text").rows() == [("u-a1", "flite:slt", "It is one."),
                                                          ("u-q1", "flite:awb", "What is one?")]
    summary = clean.summary(rows).sort("task", "voice")
    qa_awb = summary.filter((summary["task"] == "qa") & (summary["voice"] == "flite:awb")).row(0, named=True)
    assert (qa_awb["docs"], qa_awb["samples"], qa_awb["utterances"]) == (1, 1, 1)
    il = summary.filter(summary["task"] == "interleaved")
    assert il["samples"].to_list() == [0, 0], "interleaved documents have no sample"
    assert il["hours"].sum() == pytest.approx(2.5 / 3600, abs=1e-3)


def test_split_contents_cover_only_that_split(clean: Lineage) -> None:
    test = clean.contents(split="test")
    assert set(test["doc_id"]) == {"d-qa2", "d-sc2"} and set(test["split"]) == {"test"}
    with pytest.raises(ValueError, match="exactly one"):
        clean.contents()


def test_where_a_sample_utterance_and_fact_went(clean: Lineage) -> None:
    assert clean.where("smp-qa1").select("via", "doc_id", "shard", "row", "offset").rows() == [
        ("sample", "d-qa1", "train/shard-00000.safetensors", 0, 0)]
    utt = clean.where("u-q1")
    assert set(utt["doc_id"]) == {"d-qa1", "d-il"} and set(utt["via"]) == {"utterance"}
    fact = clean.where("f-test")
    assert fact.select("via", "doc_id", "split").rows() == [("parent", "d-qa2", "test")]
    assert clean.describe("u-q2").rows() == [("utterance", "test", "speech_user", "What is two?")]
    assert clean.where("nothing").is_empty() and clean.describe("nothing").is_empty()


def test_overview_counts_documents_per_split_and_task(clean: Lineage) -> None:
    rows = {(r["split"], r["task"]): r for r in clean.overview().iter_rows(named=True)}
    assert rows[("train", "qa")]["docs"] == 1 and rows[("train", "interleaved")]["samples"] == 0
    assert rows[("test", "qa")]["tokens"] == 100 and len(rows) == 5


def test_clean_corpus_has_no_leak_although_a_caption_repeats(clean: Lineage) -> None:
    assert clean.leaks("test").is_empty()
    assert clean.leaks("val").is_empty()
    with pytest.raises(ValueError, match="held-out"):
        clean.leaks("train")


@pytest.mark.parametrize("kind", corpus.PLANTS)
def test_each_planted_leak_is_found_by_its_rule(tmp_path: Path, kind: str) -> None:
    leaks = Lineage(*corpus.write(tmp_path, leak=kind)).leaks("test")
    assert corpus.RULES[kind] in set(leaks["rule"]), leaks
    assert set(leaks["doc_id"]) <= {"d-qa1", "d-il", "d-copy", "d-new"}


@pytest.mark.parametrize("kind", [None, *corpus.PLANTS])
def test_cli_leak_check_exit_code(tmp_path: Path, kind: str | None, capsys: pytest.CaptureFixture) -> None:
    validated, shards = corpus.write(tmp_path, leak=kind)
    code = main(["lineage", "--validated", str(validated), "--shards", str(shards), "leaks", "--split", "test"])
    out = capsys.readouterr().out
    if kind is None:
        assert code == 0 and out.startswith("no test data")
    else:
        assert code == 1 and out.startswith("LEAK") and corpus.RULES[kind] in out


def test_cli_shard_where_and_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    validated, shards = corpus.write(tmp_path)
    common = ["lineage", "--validated", str(validated), "--shards", str(shards)]
    assert main([*common, "shard", "train/shard-00000.safetensors"]) == 0
    assert "| qa | flite:awb | 1 | 1 | 1 |" in capsys.readouterr().out
    assert main([*common, "where", "u-a2"]) == 0
    assert "d-qa2" in capsys.readouterr().out
    assert main([*common, "where", "nope"]) == 2
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train": {
        "cmd": "python -m flows.train", "deps": [{"path": "data/shards", "md5": "abc.dir"},
                                                  {"path": "stages/train.py", "md5": "code"}],
        "outs": [{"path": "models/ttt", "md5": "def.dir"}]}}}))
    assert main([*common, "run", "--lock", str(lock)]) == 0
    out = capsys.readouterr().out
    assert "| deps | data/shards | abc.dir |" in out and "| outs | models/ttt | def.dir |" in out
    assert "stages/train.py" not in out and "What is one?" in out and "What is two?" not in out


def test_locked_stage_errors(tmp_path: Path) -> None:
    with pytest.raises(LineageError, match="no .*dvc.lock"):
        locked_stage(tmp_path / "dvc.lock")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  pack:\n    cmd: x\n")
    with pytest.raises(LineageError, match="no 'train' stage"):
        locked_stage(tmp_path / "dvc.lock")


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(LineageError, match="index.parquet"):
        Lineage(tmp_path, tmp_path)


def test_markdown_escapes_and_limits() -> None:
    import polars as pl

    text = markdown(pl.DataFrame({"a": ["x|y", None, "z"], "b": [0.123456, 2.0, 3.0]}), limit=2)
    assert text.splitlines()[:4] == ["| a | b |", "|---|---|", "| x\\|y | 0.1235 |", "|  | 2 |"]
    assert text.endswith("… 1 more rows")
