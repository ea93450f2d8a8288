"""tokenizers: the shared vocabulary — a text tokenizer and an audio codec, trained on the train split or loaded.

    dvc repro tokenizers
    python -m flows.tokenizers --params params.yaml --validated data/validated --audio data/audio \\
        --out models/tokenizers

Output layout (`out_dir`):
- `text/`: the text tokenizer with every special token and the audio codes (`stages.text_tokenizer`), its
  `token_spec.json` resolving every id; `TokenSpec.audio_size` is the codec's codebook size.
- `audio/`: the codec. Embedded (tiny/gpu): `AudioCodec.fit` on train-split clips streamed from the audio shards,
  saved with `AudioCodec.save`. GLM-4-Voice (full): `external.json` naming the local tokenizer and decoder
  directories, checked here so a bad path fails this stage and not a later one.
- `summary.json`: vocabulary sizes, token rate and what the fit read (for the report).

Only train-split data reaches either fit (the BPE also sees the instruction texts the pack stage writes and the
chat role names), so nothing held out shapes the vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import torch

from stages import io
from stages.audio_codec import AudioCodec, CodecConfig, SpeechCodec, load_glm4voice
from stages.audio_codec.external import (GLM4_CODEBOOK_SIZE, GLM4_DECODER_FILES, GLM4_TOKEN_RATE_HZ,
                                         GLM4_TOKENIZER_FILES, check_model_dir)
from stages.audio_io import SAMPLE_RATE
from stages.audio_shards import read_clips, shard_groups
from stages.documents import INSTRUCTIONS
from model.vocab import TokenSpec

TEXT_DIR = "text"
AUDIO_DIR = "audio"
EXTERNAL_FILE = "external.json"
#: Added to `base.seed` for the codec fit's subsample and k-means, so stages never share a random stream.
SEED_OFFSET = 3


@dataclass(frozen=True)
class TokenizersParams:
    """`tokenizers` section of params.yaml."""

    text_source: Literal["bpe", "qwen"] = "bpe"
    """`bpe`: train a byte-level BPE on the train-split texts; `qwen`: extend a local Qwen2.5 tokenizer."""
    text_vocab_size: int = 4096
    """BPE text vocabulary (256 byte symbols + merges), before the special and audio tokens (bpe only)."""
    min_frequency: int = 2
    """A pair must occur this often to become a merge (bpe only)."""
    qwen_dir: str = ""
    """Local Qwen2.5 model or tokenizer directory (qwen only; never downloaded)."""
    audio_source: Literal["embedded", "glm4voice"] = "embedded"
    """`embedded`: fit the k-means log-mel codec here; `glm4voice`: GLM-4-Voice tokenizer + decoder from local dirs."""
    codec: CodecConfig = field(default_factory=CodecConfig)
    """The embedded codec's settings (token rate, codebook size, decoder); see `stages.audio_codec.CodecConfig`."""
    fit_max_clips: int = 4000
    """Train-split clips (a seeded subsample) streamed to the codec fit; it stops at `codec.max_fit_tokens`."""
    glm4voice_tokenizer_dir: str = ""
    """Local GLM-4-Voice speech tokenizer directory (glm4voice only)."""
    glm4voice_decoder_dir: str = ""
    """Local GLM-4-Voice decoder (CosyVoice flow + HiFT) directory (glm4voice only)."""

    def __post_init__(self) -> None:
        if self.text_source == "qwen" and not self.qwen_dir:
            raise ValueError("text_source 'qwen' needs qwen_dir")
        if self.audio_source == "glm4voice" and not (self.glm4voice_tokenizer_dir and self.glm4voice_decoder_dir):
            raise ValueError("audio_source 'glm4voice' needs glm4voice_tokenizer_dir and glm4voice_decoder_dir")
        if self.fit_max_clips < 1 or self.min_frequency < 1:
            raise ValueError("fit_max_clips and min_frequency must be at least 1")

    @property
    def audio_size(self) -> int:
        """Codebook size, i.e. the number of audio-code ids in the vocabulary."""
        return GLM4_CODEBOOK_SIZE if self.audio_source == "glm4voice" else self.codec.codebook_size

    @property
    def token_rate_hz(self) -> float:
        return GLM4_TOKEN_RATE_HZ if self.audio_source == "glm4voice" else self.codec.token_rate_hz


def training_texts(validated_dir: str | Path) -> Iterator[str]:
    """Every train-split text the documents contain: utterance texts, sample turn texts, instructions, role names."""
    v = Path(validated_dir)
    utts = pl.scan_parquet(v / "utterances.parquet").filter(pl.col("split") == "train").select("text")
    turns = (pl.scan_parquet(v / "samples.parquet").filter(pl.col("split") == "train").select("turns")
             .explode("turns").select(pl.col("turns").struct.field("text")))
    for frame in (utts, turns):
        for (text,) in frame.collect().iter_rows():
            if text:
                yield text
    for variants in INSTRUCTIONS.values():
        yield from variants
    yield from ("system\n", "user\n", "assistant\n")


def fit_clips(validated_dir: str | Path, audio_dir: str | Path, seed: int, max_clips: int) -> Iterator[np.ndarray]:
    """A seeded subsample of the train-split clips, decoded one shard at a time (flat memory)."""
    manifest = (pl.read_parquet(Path(validated_dir) / "audio.parquet", columns=["utt_id", "split", "shard"])
                .filter(pl.col("split") == "train").sort("utt_id"))
    pick = np.sort(np.random.default_rng(seed).permutation(manifest.height)[:max_clips])
    for shard, utt_ids in shard_groups(manifest[pick]):
        for _, pcm in read_clips(audio_dir, shard, utt_ids):
            yield pcm


@dataclass(frozen=True)
class TokenizersResult:
    spec: TokenSpec
    summary: dict[str, object]


def run_tokenizers(params: TokenizersParams, seed: int, validated_dir: str | Path, audio_dir: str | Path,
                   out_dir: str | Path) -> TokenizersResult:
    """Build the text tokenizer and the audio codec into `out_dir` (see the module docstring)."""
    from stages.text_tokenizer import load_local_qwen_tokenizer, train_text_tokenizer  # transformers: seconds

    out = Path(out_dir)
    summary: dict[str, object] = {"text_source": params.text_source, "audio_source": params.audio_source,
                                  "audio_size": params.audio_size, "token_rate_hz": params.token_rate_hz}
    if params.audio_source == "glm4voice":
        check_model_dir(params.glm4voice_tokenizer_dir, GLM4_TOKENIZER_FILES, "GLM-4-Voice tokenizer")
        check_model_dir(params.glm4voice_decoder_dir, GLM4_DECODER_FILES, "GLM-4-Voice decoder")
        io.write_json({"kind": "glm4voice", "tokenizer_dir": params.glm4voice_tokenizer_dir,
                       "decoder_dir": params.glm4voice_decoder_dir}, out / AUDIO_DIR / EXTERNAL_FILE)
    else:
        tally = _Tally()
        clips = tally.count(fit_clips(validated_dir, audio_dir, seed + SEED_OFFSET, params.fit_max_clips))
        AudioCodec.fit(clips, params.codec, seed + SEED_OFFSET).save(out / AUDIO_DIR)
        summary |= {"fit_clips": tally.clips, "fit_seconds": round(tally.seconds, 2)}
    if params.text_source == "qwen":
        spec = load_local_qwen_tokenizer(params.qwen_dir, params.audio_size, out / TEXT_DIR)
    else:
        spec = train_text_tokenizer(training_texts(validated_dir), params.text_vocab_size, params.audio_size,
                                    out / TEXT_DIR, min_frequency=params.min_frequency)
    summary |= {"vocab_size": spec.vocab_size, "text_vocab_size": spec.pad_id, "audio_start": spec.audio_start}
    io.write_json(summary, out / "summary.json")
    return TokenizersResult(spec, summary)


@dataclass
class _Tally:
    """How many clips (and seconds) the codec fit actually read: it stops at `max_fit_tokens`."""

    clips: int = 0
    seconds: float = 0.0

    def count(self, clips: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for pcm in clips:
            self.clips += 1
            self.seconds += len(pcm) / SAMPLE_RATE
            yield pcm


def load_codec(tokenizers_dir: str | Path) -> SpeechCodec:
    """The audio codec the tokenizers stage wrote: the embedded one, or GLM-4-Voice from its local directories."""
    audio = Path(tokenizers_dir) / AUDIO_DIR
    external = audio / EXTERNAL_FILE
    if external.is_file():
        ref = json.loads(external.read_text())
        return load_glm4voice(ref["tokenizer_dir"], ref["decoder_dir"])
    return AudioCodec.load(audio)


def codec_code_vectors(tokenizers_dir: str | Path) -> torch.Tensor:
    """`[codebook_size, D]` vectors of the embedded codec's codes (its k-means centroids), for initialising the
    model's audio-code embeddings; an external tokenizer has no such vectors, which is an error naming the fix."""
    audio = Path(tokenizers_dir) / AUDIO_DIR
    if (audio / EXTERNAL_FILE).is_file():
        raise ValueError(f"{audio} holds an external audio tokenizer (GLM-4-Voice), which has no code vectors; "
                         "set train.audio_embedding_init: random")
    return AudioCodec.load(audio).centroids_KD


def codec_fingerprint(tokenizers_dir: str | Path) -> str:
    """sha256 over the codec directory's files: changes whenever the codes a clip gets could change."""
    h = hashlib.sha256()
    audio = Path(tokenizers_dir) / AUDIO_DIR
    for f in sorted(p for p in audio.iterdir() if p.is_file() and not p.name.startswith(".")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()
