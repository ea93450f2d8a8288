"""fetch: the embedded corpus is deterministic, split by fact group with no leak, and internally consistent."""

import json
from dataclasses import replace

import polars as pl
import pytest

from stages.facts import all_facts
from stages.fetch import FetchParams, assign_split, build_synthetic, run_fetch

SMALL = FetchParams(n_asr=120, n_tts=60, n_qa=80, n_chat=20, n_sound=24)


@pytest.fixture(scope="module")
def corpus():
    return build_synthetic(SMALL, seed=7)


def test_deterministic_given_seed(corpus):
    again = build_synthetic(SMALL, seed=7)
    for a, b in zip(corpus, again):
        assert a.equals(b)
    other = build_synthetic(SMALL, seed=8)
    assert not corpus[2]["sample_id"].equals(other[2]["sample_id"])


def test_counts_and_tasks(corpus):
    _, utts, samples = corpus
    counts = dict(samples.group_by("task").len().iter_rows())
    assert set(counts) == {"asr", "tts", "qa", "chat", "sound_cls", "sound_caption"}
    assert counts["sound_cls"] == counts["sound_caption"] == 24
    assert 0 < counts["asr"] <= 120  # identical draws collapse into one sample
    assert utts["utt_id"].is_unique().all() and samples["sample_id"].is_unique().all()


def test_turns_reference_existing_utterances_of_the_right_kind(corpus):
    _, utts, samples = corpus
    kind = dict(zip(utts["utt_id"], utts["kind"]))
    for turns in samples["turns"].to_list():
        for t in turns:
            if t["utt_id"] is None:
                continue
            assert t["utt_id"] in kind
            expected = {"user": {"speech_user", "sound"}, "assistant": {"speech_assistant"}}[t["role"]]
            assert kind[t["utt_id"]] in expected


def test_splits_are_disjoint_by_fact_group(corpus):
    facts, utts, samples = corpus
    fact_split = dict(zip(facts["fact_id"], facts["split"]))
    for row in samples.filter(pl.col("task").is_in(["asr", "tts", "qa", "chat"])).iter_rows(named=True):
        assert {fact_split[f] for f in row["parent_ids"]} == {row["split"]}
    assert utts.group_by("group_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height == 0
    speech = utts.filter(pl.col("kind") != "sound")  # sound captions are templates and repeat by design
    assert speech.group_by("text").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height == 0


def test_no_test_fact_reaches_training_in_any_form(corpus):
    facts, utts, _ = corpus
    test_ids = set(facts.filter(pl.col("split") == "test")["fact_id"])
    by_id = {f.fact_id: f for f in all_facts(SMALL.min_city_population, SMALL.max_operand, SMALL.max_number)}
    forms = {s for fid in test_ids for s in (*by_id[fid].questions, by_id[fid].spoken_answer, *by_id[fid].statements)}
    train_texts = set(utts.filter(pl.col("split") == "train")["text"])
    assert test_ids and not (forms & train_texts)


def test_assign_split_fractions_and_stability():
    splits = [assign_split(f"g{i}", 3, (0.8, 0.1, 0.1)) for i in range(4000)]
    frac = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.8) < 0.03 and abs(frac["test"] - 0.1) < 0.03
    assert splits == [assign_split(f"g{i}", 3, (0.8, 0.1, 0.1)) for i in range(4000)]


def test_qa_answer_is_short_and_in_spoken_answer(corpus):
    _, _, samples = corpus
    for row in samples.filter(pl.col("task") == "qa").iter_rows(named=True):
        assert row["answer"] and row["answer"] in row["turns"][1]["text"]


def test_run_fetch_writes_identical_bytes_twice(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_fetch(SMALL, 7, a)
    result = run_fetch(SMALL, 7, b)
    for name in ("facts.parquet", "utterances.parquet", "samples.parquet", "source.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert json.loads((a / "source.json").read_text()) == {"source": "synthetic", "audio_root": ""}
    assert sum(result.samples.values()) == pl.read_parquet(a / "samples.parquet").height


def test_local_jsonl_source(tmp_path):
    import numpy as np
    import soundfile as sf

    (tmp_path / "c").mkdir()
    rows = []
    for i in range(6):
        sf.write(tmp_path / "c" / f"{i}.wav", 0.1 * np.ones(1600), 16000)
        rows.append({"audio": f"c/{i}.wav", "text": f"sentence number {i}", "split": "test" if i == 5 else None})
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({k: v for k, v in r.items() if v}) for r in rows))
    params = replace(FetchParams(), source="jsonl", local_path=str(tmp_path / "m.jsonl"))
    result = run_fetch(params, 1, tmp_path / "out")
    utts = pl.read_parquet(tmp_path / "out" / "utterances.parquet")
    assert result.samples == {"asr": 6, "tts": 6}
    assert set(utts["kind"]) == {"recorded"}
    assert utts.filter(pl.col("text") == "sentence number 5")["split"].item() == "test"
    assert json.loads((tmp_path / "out" / "source.json").read_text())["audio_root"] == str(tmp_path.resolve())


def test_params_checks():
    with pytest.raises(ValueError, match="split_fractions"):
        FetchParams(split_fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="needs local_path"):
        FetchParams(source="jsonl")
    with pytest.raises(ValueError, match="unknown fact families"):
        FetchParams(sources=("astrology",))
