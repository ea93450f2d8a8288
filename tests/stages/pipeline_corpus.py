"""A tiny validated corpus with audio shards, and the tokenizers -> tokenize -> pack outputs built from it.

Shared by the tests of those stages and of the loader; `build` runs each step once per test session (the result
is memoised here), in seconds: the manifests come from the real `fetch` builder, the audio is deterministic
synthetic "speech" (tone sequences whose length follows the text) written in the synthesize stage's shard format,
and the codec is a 64-code centroid codec. One speech utterance is left out of the validated manifests, as if
quarantined, so the pack stage's missing-audio accounting is exercised.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from stages import io
from stages.audio_codec import CodecConfig
from stages.audio_io import SAMPLE_RATE, encode_flac
from stages.fetch import FetchParams, build_synthetic
from stages.pack import PackParams, run_pack
from stages.sounds import generate_sound
from stages.synthesize import AUDIO_MANIFEST_SCHEMA
from stages.tokenize import TokenizeParams, run_tokenize
from stages.tokenizers import TokenizersParams, run_tokenizers

SEED = 11
FETCH = FetchParams(n_asr=40, n_tts=24, n_qa=30, n_chat=8, n_sound=14)
CODEC = CodecConfig(codebook_size=64, decoder="centroid", max_fit_tokens=3000, kmeans_iters=8)
TOKENIZERS = TokenizersParams(text_vocab_size=600, codec=CODEC, fit_max_clips=120)
PACK = PackParams(seq_len=384, rows_per_shard=8)
SHARD_SIZE = 40


def fake_speech(utt_id: str, text: str) -> np.ndarray:
    """Deterministic tone sequence, ~55 ms per character, pitch drawn from the utterance id."""
    rng = np.random.default_rng(int(hashlib.sha256(utt_id.encode()).hexdigest()[:8], 16))
    n = max(int(0.055 * len(text) * SAMPLE_RATE), SAMPLE_RATE // 2)
    t = np.arange(n) / SAMPLE_RATE
    freq = rng.uniform(120, 300) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
    pcm = 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) + 0.01 * rng.standard_normal(n)
    return pcm.astype(np.float32)


def write_corpus(root: Path) -> tuple[Path, Path, str]:
    """(validated_dir, audio_dir, quarantined utt_id): manifests, FLAC shards and the audio manifest."""
    facts, utts, samples = build_synthetic(FETCH, SEED)
    audio_dir, validated = root / "audio", root / "validated"
    rows = []
    ordered = utts.sort("utt_id")
    for k, start in enumerate(range(0, ordered.height, SHARD_SIZE)):
        shard = f"shards/shard-{k:05d}.parquet"
        ids, blobs = [], []
        for u in ordered.slice(start, SHARD_SIZE).iter_rows(named=True):
            pcm = (generate_sound(u["sound_class"], u["sound_seed"])[0] if u["kind"] == "sound"
                   else fake_speech(u["utt_id"], u["text"]))
            data = encode_flac(pcm)
            ids.append(u["utt_id"])
            blobs.append(data)
            rows.append(dict(utt_id=u["utt_id"], kind=u["kind"], voice="test", text=u["text"], split=u["split"],
                             group_id=u["group_id"], parent_ids=u["parent_ids"], duration_s=len(pcm) / SAMPLE_RATE,
                             sample_rate=SAMPLE_RATE, channels=1, n_samples=len(pcm), shard=shard,
                             sha256=hashlib.sha256(data).hexdigest(), source=u["source"]))
        io.write_parquet(pl.DataFrame({"utt_id": ids, "audio": blobs}), audio_dir / shard)
    manifest = pl.DataFrame(rows, schema=AUDIO_MANIFEST_SCHEMA)
    quarantined = utts.filter((pl.col("kind") == "speech_user") & (pl.col("split") == "train"))["utt_id"][0]
    keep = pl.col("utt_id") != quarantined
    io.write_parquet(facts, validated / "facts.parquet")
    io.write_parquet(utts.filter(keep), validated / "utterances.parquet")
    io.write_parquet(samples, validated / "samples.parquet")
    io.write_parquet(manifest.filter(keep), validated / "audio.parquet")
    return validated, audio_dir, quarantined


@dataclass(frozen=True)
class Built:
    root: Path
    validated: Path
    audio: Path
    tokenizers: Path
    tokens: Path
    shards: Path
    quarantined: str
    pack_summary: dict


_BUILT: dict[str, Built] = {}


def build(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The whole tiny chain, once per session."""
    if "corpus" not in _BUILT:
        root = tmp_path_factory.mktemp("pipeline")
        validated, audio, quarantined = write_corpus(root)
        run_tokenizers(TOKENIZERS, SEED, validated, audio, root / "tokenizers")
        run_tokenize(TokenizeParams(), validated, audio, root / "tokenizers", root / "tokens")
        summary = run_pack(PACK, SEED, validated, root / "tokens", root / "tokenizers", root / "shards")
        _BUILT["corpus"] = Built(root, validated, audio, root / "tokenizers", root / "tokens", root / "shards",
                                 quarantined, summary)
    return _BUILT["corpus"]
