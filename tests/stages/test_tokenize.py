"""Tests for stages/tokenize.py: every validated clip gets its codes, batching changes nothing, shards resume."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest

import pipeline_corpus as corpus
from stages.audio_shards import read_clips
from stages.tokenize import TokenizeParams, plan_jobs, run_tokenize
from stages.tokenizers import load_codec


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return corpus.build(tmp_path_factory)


def load_codes(tokens_dir, row) -> np.ndarray:
    array = np.load(tokens_dir / row["shard"], allow_pickle=False)
    return array[row["offset"]:row["offset"] + row["length"]]


def test_index_covers_every_validated_utterance_once_and_codes_match_single_clip_encoding(built):
    index = pl.read_parquet(built.tokens / "index.parquet")
    manifest = pl.read_parquet(built.validated / "audio.parquet")
    assert sorted(index["utt_id"]) == sorted(manifest["utt_id"]) and index["utt_id"].is_unique().all()
    assert built.quarantined not in set(index["utt_id"])
    codec = load_codec(built.tokenizers)
    joined = index.join(manifest.select("utt_id", "shard", "n_samples", "split"), on="utt_id", suffix="_audio")
    assert (joined["split"] == joined["split_audio"]).all()
    for row in joined.head(12).iter_rows(named=True):
        codes = load_codes(built.tokens, row)
        assert codes.dtype == np.int32 and len(codes) == codec.n_tokens(row["n_samples"])
        ((_, pcm),) = read_clips(built.audio, row["shard_audio"], [row["utt_id"]])
        assert np.array_equal(codes, codec.encode(pcm))


def test_rerun_skips_finished_shards_and_redoes_only_stale_ones(built, tmp_path):
    out = tmp_path / "tokens"
    shutil.copytree(built.tokens, out)
    calls: list[str] = []

    def counting_map(fn, jobs):
        for job in jobs:
            result = fn(job)
            if result.utterances:
                calls.append(job.name)
            yield result

    before = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    run_tokenize(TokenizeParams(), built.validated, built.audio, built.tokenizers, out, map_shards=counting_map)
    assert calls == []
    victim = plan_jobs(built.validated, built.tokenizers)[1].name
    (out / "shards" / f"{victim}.done.json").write_text('{"key": "stale"}')
    (out / "shards" / f"{victim}.npy").unlink()
    (out / "shards" / "shard-09999.npy").write_bytes(b"left over from an old run")
    run_tokenize(TokenizeParams(), built.validated, built.audio, built.tokenizers, out, map_shards=counting_map)
    assert calls == [victim]
    after = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    assert set(after) == set(before)
    # outputs are pure functions of the inputs (no timings), so DVC sees the same hashes after a rerun
    assert all(after[name] == before[name] for name in after)
    for name in ("index.parquet", "summary.json"):
        assert (out / name).read_bytes() == (built.tokens / name).read_bytes()


def test_changed_audio_changes_the_job_key(built, tmp_path):
    validated = tmp_path / "validated"
    shutil.copytree(built.validated, validated)
    manifest = pl.read_parquet(validated / "audio.parquet")
    first = manifest["utt_id"][0]
    manifest.with_columns(pl.when(pl.col("utt_id") == first).then(pl.lit("0" * 64)).otherwise(pl.col("sha256"))
                          .alias("sha256")).write_parquet(validated / "audio.parquet")
    old = {j.name: j.key for j in plan_jobs(built.validated, built.tokenizers)}
    new = {j.name: j.key for j in plan_jobs(validated, built.tokenizers)}
    assert [name for name in old if old[name] != new[name]] == ["shard-00000"]
