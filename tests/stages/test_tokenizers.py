"""Tests for stages/tokenizers.py: train-split-only fits, the shared vocabulary's special tokens, the codec paths."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

import pipeline_corpus as corpus
from model.vocab import SPECIAL_TOKENS, audio_token
from stages.audio_codec import AudioCodec, ExternalCodecUnavailable
from stages.config import ParamsError, from_mapping
from stages.documents import INSTRUCTIONS
from stages.text_tokenizer import load_tokenizer
from stages.tokenizers import (AUDIO_DIR, EXTERNAL_FILE, TEXT_DIR, TokenizersParams, codec_fingerprint, fit_clips,
                               load_codec, run_tokenizers, training_texts)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return corpus.build(tmp_path_factory)


def test_every_special_and_audio_token_round_trips_and_audio_size_is_the_codebook(built):
    tok, spec = load_tokenizer(built.tokenizers / TEXT_DIR)
    codec = load_codec(built.tokenizers)
    assert spec.audio_size == codec.codebook_size == corpus.CODEC.codebook_size
    for token in (*SPECIAL_TOKENS, *(audio_token(c) for c in range(spec.audio_size))):
        ids = tok.encode(token, add_special_tokens=False)
        assert len(ids) == 1 and tok.decode(ids) == token, token
    assert tok.encode(audio_token(5), add_special_tokens=False) == [spec.audio_id(5)]
    summary = json.loads((built.tokenizers / "summary.json").read_text())
    assert summary["vocab_size"] == spec.vocab_size and summary["fit_clips"] > 0


def test_text_training_corpus_is_train_split_plus_instructions(built):
    texts = list(training_texts(built.validated))
    utts = pl.read_parquet(built.validated / "utterances.parquet")
    held_out = set(utts.filter(pl.col("split") != "train")["text"]) - set(utts.filter(pl.col("split") == "train")["text"])
    assert held_out, "the fixture must have texts only held-out splits use"
    assert not held_out & set(texts)
    assert {v for variants in INSTRUCTIONS.values() for v in variants} <= set(texts)
    assert set(utts.filter(pl.col("split") == "train")["text"]) <= set(texts)


def test_codec_fit_reads_only_a_seeded_subsample_of_train_clips(built):
    manifest = pl.read_parquet(built.validated / "audio.parquet")
    train_lengths = set(manifest.filter(pl.col("split") == "train")["n_samples"])
    first = [len(c) for c in fit_clips(built.validated, built.audio, seed=3, max_clips=10)]
    again = [len(c) for c in fit_clips(built.validated, built.audio, seed=3, max_clips=10)]
    other = [len(c) for c in fit_clips(built.validated, built.audio, seed=4, max_clips=10)]
    assert len(first) == 10 and first == again and first != other
    assert set(first) <= train_lengths


def test_codec_directory_round_trips_and_fingerprint_tracks_it(built, tmp_path):
    codec = load_codec(built.tokenizers)
    assert isinstance(codec, AudioCodec)
    pcm = corpus.fake_speech("utt-x", "a sentence of some length")
    codes = codec.encode(pcm)
    assert codes.shape == (codec.n_tokens(len(pcm)),) and codes.max() < codec.codebook_size
    copy = tmp_path / "tok"
    (copy / AUDIO_DIR).mkdir(parents=True)
    for f in (built.tokenizers / AUDIO_DIR).iterdir():
        (copy / AUDIO_DIR / f.name).write_bytes(f.read_bytes())
    assert codec_fingerprint(copy) == codec_fingerprint(built.tokenizers)
    AudioCodec.fit([corpus.fake_speech(f"u{i}", "x" * 60) for i in range(20)], corpus.CODEC, 1).save(copy / AUDIO_DIR)
    assert codec_fingerprint(copy) != codec_fingerprint(built.tokenizers)


def test_glm4voice_path_fails_clearly_without_its_directories(built, tmp_path):
    params = replace(corpus.TOKENIZERS, audio_source="glm4voice", glm4voice_tokenizer_dir=str(tmp_path / "nope"),
                     glm4voice_decoder_dir=str(tmp_path / "nope2"))
    with pytest.raises(ExternalCodecUnavailable, match="GLM-4-Voice tokenizer"):
        run_tokenizers(params, corpus.SEED, built.validated, built.audio, tmp_path / "out")
    assert params.audio_size == 16384


def test_glm4voice_path_writes_a_reference_the_loader_follows(built, tmp_path, monkeypatch):
    tok_dir, dec_dir = tmp_path / "glm-tok", tmp_path / "glm-dec"
    for d, names in ((tok_dir, ("config.json", "preprocessor_config.json", "model.safetensors")),
                     (dec_dir, ("config.yaml", "flow.pt", "hift.pt"))):
        d.mkdir()
        for n in names:
            (d / n).write_text("x")
    params = replace(corpus.TOKENIZERS, audio_source="glm4voice", glm4voice_tokenizer_dir=str(tok_dir),
                     glm4voice_decoder_dir=str(dec_dir))
    result = run_tokenizers(params, corpus.SEED, built.validated, built.audio, tmp_path / "out")
    assert result.spec.audio_size == 16384
    ref = json.loads((tmp_path / "out" / AUDIO_DIR / EXTERNAL_FILE).read_text())
    assert ref == {"kind": "glm4voice", "tokenizer_dir": str(tok_dir), "decoder_dir": str(dec_dir)}
    seen = {}
    monkeypatch.setattr("stages.tokenizers.load_glm4voice", lambda t, d: seen.setdefault("dirs", (t, d)))
    load_codec(tmp_path / "out")
    assert seen["dirs"] == (str(tok_dir), str(dec_dir))


def test_params_are_strict():
    with pytest.raises(ParamsError, match="unknown key"):
        from_mapping(TokenizersParams, {"codec": {"codebook": 12}}, "t")
    with pytest.raises(ParamsError, match="qwen_dir"):
        from_mapping(TokenizersParams, {"text_source": "qwen"}, "t")
    bound = from_mapping(TokenizersParams, {"codec": {"codebook_size": 128}}, "t")
    assert bound.audio_size == 128 and bound.codec.token_rate_hz == 25.0
    assert np.isclose(bound.token_rate_hz, 25.0)
