"""Tests for stages/pack.py: whole documents per row with correct doc ids, lineage, split hygiene, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file

import pipeline_corpus as corpus
from model.vocab import ROLE_ASSISTANT, ROLE_PAD, ROLE_PROMPT, TokenSpec
from stages.config import ParamsError, from_mapping
from stages.pack import PackParams, check_split_hygiene, iter_row_documents, pack_rows, run_pack
from stages.text_tokenizer import load_tokenizer
from stages.tokenizers import TEXT_DIR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return corpus.build(tmp_path_factory)


@pytest.fixture(scope="module")
def index(built):
    return pl.read_parquet(built.shards / "index.parquet")


@pytest.fixture(scope="module")
def spec(built) -> TokenSpec:
    return load_tokenizer(built.tokenizers / TEXT_DIR)[1]


@pytest.fixture(scope="module")
def shards(built) -> dict[str, dict[str, np.ndarray]]:
    return {p.relative_to(built.shards).as_posix(): load_file(p) for p in sorted(built.shards.glob("*/shard-*"))}


def codes_of(built, utt_id: str) -> np.ndarray:
    row = pl.read_parquet(built.tokens / "index.parquet").filter(pl.col("utt_id") == utt_id).row(0, named=True)
    return np.load(built.tokens / row["shard"], allow_pickle=False)[row["offset"]:row["offset"] + row["length"]]


def test_rows_hold_whole_documents_with_right_doc_ids_and_padding(built, index, shards, spec):
    assert set(shards) == set(index["shard"])
    for name, t in shards.items():
        ids, doc, role = t["input_ids"], t["doc_ids"], t["role"]
        assert ids.shape == doc.shape == role.shape and ids.shape[1] == corpus.PACK.seq_len
        assert (ids.dtype, doc.dtype, role.dtype) == (np.int32, np.int32, np.int8)
        for r in range(ids.shape[0]):
            records = list(iter_row_documents(index, name, r))
            assert records, "no empty rows"
            expected = np.full(ids.shape[1], -1)
            pos = 0
            for d, rec in enumerate(records):
                assert rec["doc_in_row"] == d and rec["offset"] == pos
                expected[pos:pos + rec["length"]] = d
                seg = ids[r, pos:pos + rec["length"]]
                assert seg[0] == spec.im_start_id and seg[-2] == spec.im_end_id, "a document starts and ends here"
                pos += rec["length"]
            assert np.array_equal(doc[r], expected), f"{name} row {r}"
            pad = doc[r] == -1
            assert (ids[r][pad] == spec.pad_id).all() and (role[r][pad] == ROLE_PAD).all()
            assert (role[r][~pad] != ROLE_PAD).all()
    assert index["doc_id"].is_unique().all()


def test_index_metadata_agrees_with_the_tokens(index, shards, spec):
    for rec in index.iter_rows(named=True):
        t = shards[rec["shard"]]
        ids = t["input_ids"][rec["row"], rec["offset"]:rec["offset"] + rec["length"]]
        role = t["role"][rec["row"], rec["offset"]:rec["offset"] + rec["length"]]
        assert (role[:rec["prompt_len"]] == ROLE_PROMPT).all() and role[rec["prompt_len"]] == ROLE_ASSISTANT
        for kind, start, n in zip(rec["span_kinds"], rec["span_starts"], rec["span_lens"]):
            begin, end = {"user": (spec.begin_audio_id, spec.end_audio_id),
                          "chunk": (spec.begin_audio_id, spec.end_audio_id),
                          "tail": (spec.begin_audio_tail_id, spec.end_audio_tail_id)}[kind]
            assert ids[start - 1] == begin and ids[start + n] == end
            assert spec.is_audio_code(ids[start:start + n]).all()
            assert (role[start:start + n] == (ROLE_PROMPT if kind == "user" else ROLE_ASSISTANT)).all()
        if rec["tail_len"]:
            assert ids[rec["tail_start"] - 1] == spec.begin_audio_tail_id
            assert ids[rec["tail_start"] + rec["tail_len"]] == spec.end_audio_tail_id
        else:
            assert rec["task"] in ("asr", "sound_cls", "sound_caption") and rec["tail_start"] == -1


def test_lineage_from_any_row_back_to_source_utterances_and_facts(built, index, shards, spec):
    utts = pl.read_parquet(built.validated / "utterances.parquet")
    samples = pl.read_parquet(built.validated / "samples.parquet")
    parents_of = dict(zip(utts["utt_id"], utts["parent_ids"]))
    checked = 0
    for name in sorted(shards):
        for r in (0, shards[name]["input_ids"].shape[0] - 1):
            for rec in iter_row_documents(index, name, r):
                ids = shards[name]["input_ids"][r, rec["offset"]:rec["offset"] + rec["length"]]
                # every audio span's codes, in document order, are the source utterances' codes in order
                spans = np.concatenate([ids[s:s + n] for s, n in zip(rec["span_starts"], rec["span_lens"])])
                sources = np.concatenate([codes_of(built, u) for u in rec["utt_ids"]])
                assert np.array_equal(spans - spec.audio_start, sources)
                if not rec["sample_id"]:
                    assert rec["task"] == "interleaved"
                    assert set(rec["parent_ids"]) == {p for u in rec["utt_ids"] for p in parents_of[u]}
                else:
                    sample = samples.filter(pl.col("sample_id") == rec["sample_id"]).row(0, named=True)
                    assert sample["task"] == rec["task"] and sorted(sample["parent_ids"]) == sorted(rec["parent_ids"])
                    assert [t["utt_id"] for t in sample["turns"] if t["utt_id"]] == rec["utt_ids"]
                checked += 1
    assert checked > 10


def test_split_hygiene_and_held_out_samples_appear_once(built, index):
    utts = pl.read_parquet(built.validated / "utterances.parquet")
    samples = pl.read_parquet(built.validated / "samples.parquet")
    split_of_utt = dict(zip(utts["utt_id"], utts["split"]))
    split_of_sample = dict(zip(samples["sample_id"], samples["split"]))
    for rec in index.iter_rows(named=True):
        assert rec["shard"].startswith(rec["split"] + "/")
        assert {split_of_utt[u] for u in rec["utt_ids"]} <= {rec["split"]}
        if rec["sample_id"]:
            assert split_of_sample[rec["sample_id"]] == rec["split"]
    for split in ("val", "test"):
        assert not built.pack_summary["splits"][split]["dropped"], "the fixture keeps every held-out document"
        docs = index.filter((pl.col("split") == split) & (pl.col("sample_id") != ""))
        assert docs["sample_id"].is_unique().all()
        assert set(docs["sample_id"]) == set(samples.filter(pl.col("split") == split)["sample_id"])


def test_drops_are_counted_with_their_reason(built, index):
    train = built.pack_summary["splits"]["train"]
    assert train["dropped"]["missing_audio"] >= 1
    assert all(built.quarantined not in u for u in index["utt_ids"])
    assert train["efficiency"] > 0.85
    assert train["documents"] == index.filter(pl.col("split") == "train").height


def test_pack_is_deterministic_and_weights_shape_the_train_mix(built, tmp_path):
    """A second run in another process (another hash seed) writes the same bytes; weights change the train mix."""
    out = tmp_path / "again"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pipeline_corpus as c; from stages.pack import run_pack;"
            "run_pack(c.PACK, c.SEED, *sys.argv[2:])")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(built.validated), str(built.tokens),
                    str(built.tokenizers), str(out)], check=True, cwd=REPO, env={**os.environ, "PYTHONHASHSEED": "77"})
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(built.shards).as_posix() for p in built.shards.rglob("*") if p.is_file())
    for f in files:
        assert (out / f).read_bytes() == (built.shards / f).read_bytes(), f
    weights = dict(corpus.PACK.task_weights, asr=2.0, sound_caption=0.0, interleaved=0.5)
    summary = run_pack(replace(corpus.PACK, task_weights=weights), corpus.SEED, built.validated, built.tokens,
                       built.tokenizers, out)
    base = built.pack_summary["splits"]
    assert summary["splits"]["train"]["per_task"]["asr"] == 2 * base["train"]["per_task"]["asr"]
    assert "sound_caption" not in summary["splits"]["train"]["per_task"]
    assert "sound_caption" not in summary["splits"]["test"]["per_task"]
    assert summary["splits"]["test"]["per_task"]["asr"] == base["test"]["per_task"]["asr"]
    assert 0 < summary["splits"]["train"]["per_task"]["interleaved"] < base["train"]["per_task"]["interleaved"]
    assert not list(out.glob("*/shard-*.safetensors.tmp"))
    assert len(list(out.glob("train/shard-*"))) == summary["splits"]["train"]["shards"]


def test_over_long_documents_are_dropped_not_split(built, tmp_path):
    summary = run_pack(replace(corpus.PACK, seq_len=128), corpus.SEED, built.validated, built.tokens,
                       built.tokenizers, tmp_path / "short")
    index = pl.read_parquet(tmp_path / "short" / "index.parquet")
    assert summary["splits"]["train"]["dropped"]["longer_than_seq_len"] > 0
    assert (index["length"] <= 128).all() and ((index["offset"] + index["length"]) <= 128).all()


def test_pack_rows_best_fit_never_overfills_and_places_every_document():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, 500)
    rows = pack_rows(lengths, 512)
    assert sorted(d for row in rows for d in row) == list(range(500))
    assert all(lengths[row].sum() <= 512 for row in rows)
    assert lengths.sum() / (len(rows) * 512) > 0.95
    with pytest.raises(ValueError, match="cannot fit"):
        pack_rows(np.array([10, 600]), 512)


def test_a_sample_speaking_another_splits_utterance_is_refused(built):
    utts = pl.read_parquet(built.validated / "utterances.parquet")
    samples = pl.read_parquet(built.validated / "samples.parquet")
    test_utt = utts.filter((pl.col("split") == "test") & (pl.col("kind") == "speech_user"))["utt_id"][0]
    sample = samples.filter((pl.col("split") == "train") & (pl.col("task") == "asr")).head(1)
    turns = [dict(t, utt_id=test_utt) if t["role"] == "user" else t for t in sample["turns"][0]]
    leaked = sample.with_columns(pl.Series("turns", [turns], dtype=samples.schema["turns"]))
    with pytest.raises(ValueError, match="uses utterance"):
        check_split_hygiene(pl.concat([samples, leaked]), utts)


def test_params_are_strict():
    with pytest.raises(ParamsError, match="unknown task"):
        from_mapping(PackParams, {"task_weights": {"asr": 1.0, "karaoke": 1.0}}, "p")
    with pytest.raises(ParamsError, match="unknown key"):
        from_mapping(PackParams, {"row_len": 8}, "p")
    assert from_mapping(PackParams, {"task_weights": {"asr": 0.5}}, "p").weight("tts") == 1.0
