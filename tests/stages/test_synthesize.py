"""synthesize: voices are stable, shards resume, failures are kept for validate, recordings are normalised."""

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from stages.audio_io import decode_audio
from stages.fetch import UTTERANCE_SCHEMA
from stages.synthesize import SynthesizeParams, collect_manifest, plan_shards, run_synthesize, synthesize_shard, voice_for

PARAMS = SynthesizeParams(user_voices=("flite:kal16", "espeak-ng:en-us"), assistant_voice="flite:slt", shard_size=2,
                          max_workers=1)


def utt(utt_id, kind, text, **extra):
    row = dict(utt_id=utt_id, kind=kind, text=text, sound_class=None, sound_seed=None, audio_path=None, split="train",
               group_id="g", parent_ids=["f"], source="test", sha256="x")
    row.update(extra)
    return row


def write_raw(tmp_path, rows, audio_root=""):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    pl.DataFrame(rows, schema=UTTERANCE_SCHEMA).write_parquet(raw / "utterances.parquet")
    (raw / "source.json").write_text(json.dumps({"source": "test", "audio_root": audio_root}))
    return raw


@pytest.fixture
def corpus(tmp_path):
    from stages.sounds import generate_sound

    _, caption = generate_sound("beeps", 5)
    rows = [utt("utt-a", "speech_user", "Paris is the capital of France."),
            utt("utt-b", "speech_assistant", "Two plus two is four."),
            utt("utt-c", "sound", caption, sound_class="beeps", sound_seed=5)]
    return write_raw(tmp_path, rows)


def test_voice_choice_is_stable_and_by_role():
    assert voice_for("utt-1", "speech_assistant", None, PARAMS) == "flite:slt"
    assert voice_for("utt-1", "speech_user", None, PARAMS) in PARAMS.user_voices
    assert {voice_for(f"utt-{i}", "speech_user", None, PARAMS) for i in range(50)} == set(PARAMS.user_voices)
    assert voice_for("utt-1", "sound", "siren", PARAMS) == "procedural:siren"


def test_synthesizes_shards_and_manifest(corpus, tmp_path):
    out = tmp_path / "audio"
    manifest = run_synthesize(PARAMS, corpus, out, map_shards=map)
    assert manifest["utt_id"].to_list() == ["utt-a", "utt-b", "utt-c"]
    assert sorted(p.name for p in (out / "shards").glob("*.parquet")) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert (manifest["sample_rate"] == 16000).all() and (manifest["channels"] == 1).all()
    row = manifest.filter(pl.col("utt_id") == "utt-b").row(0, named=True)
    assert row["voice"] == "flite:slt" and 0.8 < row["duration_s"] < 5
    shard = pl.read_parquet(out / row["shard"]).filter(pl.col("utt_id") == "utt-b")
    pcm, sr = decode_audio(shard["audio"].item())
    assert sr == 16000 and pcm.shape[0] == row["n_samples"] and np.abs(pcm).max() > 0.1


def test_resume_skips_finished_shards_and_redoes_changed_ones(corpus, tmp_path):
    out = tmp_path / "audio"
    jobs = plan_shards(pl.read_parquet(corpus / "utterances.parquet"), PARAMS, "")
    assert synthesize_shard(jobs[0], str(out)) == 2  # a run "killed" after its first shard
    first = (out / "shards" / "shard-00000.parquet").stat().st_mtime_ns
    assert [synthesize_shard(j, str(out)) for j in jobs] == [0, 1]  # restart: only the missing shard is made
    assert (out / "shards" / "shard-00000.parquet").stat().st_mtime_ns == first
    changed = plan_shards(pl.read_parquet(corpus / "utterances.parquet"),
                          replace(PARAMS, assistant_voice="flite:kal16"), "")
    assert [synthesize_shard(j, str(out)) for j in changed] == [2, 0]  # the shard holding the assistant clip
    before = (out / "manifest.parquet").read_bytes() if (out / "manifest.parquet").exists() else None
    collect_manifest(changed, out)
    assert (out / "manifest.parquet").read_bytes() != before


def test_deterministic_bytes(corpus, tmp_path):
    a = run_synthesize(PARAMS, corpus, tmp_path / "a", map_shards=map)
    b = run_synthesize(PARAMS, corpus, tmp_path / "b", map_shards=map)
    assert a.equals(b)
    for name in ("shard-00000.parquet", "shard-00001.parquet"):
        assert (tmp_path / "a" / "shards" / name).read_bytes() == (tmp_path / "b" / "shards" / name).read_bytes()


def test_stale_shards_are_removed(corpus, tmp_path):
    out = tmp_path / "audio"
    run_synthesize(PARAMS, corpus, out, map_shards=map)
    jobs = plan_shards(pl.read_parquet(corpus / "utterances.parquet"), replace(PARAMS, shard_size=10), "")
    synthesize_shard(jobs[0], str(out))
    collect_manifest(jobs, out)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-00000.done.json", "shard-00000.parquet"]


def test_failed_clip_is_kept_for_validate(tmp_path):
    raw = write_raw(tmp_path, [utt("utt-x", "speech_assistant", "hello")])
    manifest = run_synthesize(replace(PARAMS, assistant_voice="flite:nosuchvoice"), raw, tmp_path / "audio",
                              map_shards=map)
    row = manifest.row(0, named=True)
    assert row["utt_id"] == "utt-x" and row["sample_rate"] == 0 and row["n_samples"] == 0


def test_recorded_audio_is_resampled_to_16k_mono(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    t = np.arange(8000) / 8000
    sf.write(root / "a.wav", np.stack([np.sin(2 * np.pi * 300 * t)] * 2, axis=1) * 0.5, 8000)
    raw = write_raw(tmp_path, [utt("utt-r", "recorded", "a tone", audio_path="a.wav")], audio_root=str(root))
    row = run_synthesize(PARAMS, raw, tmp_path / "audio", map_shards=map).row(0, named=True)
    assert row["voice"] == "recorded" and row["sample_rate"] == 16000 and row["channels"] == 1
    assert abs(row["n_samples"] - 16000) <= 2
