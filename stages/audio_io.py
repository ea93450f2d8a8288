"""Shared audio helpers: one sample format for the whole pipeline and byte-stable FLAC.

Every clip the pipeline stores is 16 kHz mono float32 in [-1, 1] (DESIGN §2). Engines emit 8, 16, 22.05 or
24 kHz, mono or not, float or int, so all of them pass through `to_pipeline_format`. Shards hold FLAC bytes;
`encode_flac` quantises to 16-bit PCM itself (round-to-nearest, not libsndfile's float conversion) so the same
PCM always gives the same bytes, which keeps DVC hashes and resumed shards stable.

Resampling uses soxr (a librosa dependency) directly: high quality, deterministic, and importing it costs
milliseconds where `librosa` costs seconds.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

#: The pipeline's one sample rate (Hz).
SAMPLE_RATE = 16000

def to_mono(pcm: np.ndarray) -> np.ndarray:
    """Average channels of a `(frames, channels)` array (soundfile's layout); 1-D input passes through."""
    x = np.asarray(pcm)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"expected 1-D or (frames, channels) audio, got shape {x.shape}")
    return x.mean(axis=1)


def as_float32(pcm: np.ndarray) -> np.ndarray:
    """Integer PCM is divided by its type's maximum (the inverse of `encode_flac`); float PCM is only cast."""
    x = np.asarray(pcm)
    if np.issubdtype(x.dtype, np.integer):
        return (x.astype(np.float64) / float(np.iinfo(x.dtype).max)).astype(np.float32)
    return x.astype(np.float32, copy=False)


def resample(pcm: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample 1-D float audio from `sr_in` to `sr_out` Hz (identity when the rates match)."""
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    x = np.ascontiguousarray(pcm, dtype=np.float32)
    if sr_in == sr_out or x.size == 0:
        return x
    return np.ascontiguousarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def to_pipeline_format(pcm: np.ndarray, sr: int) -> np.ndarray:
    """Any engine output -> 16 kHz mono float32 (the format every stage stores and reads)."""
    return resample(to_mono(as_float32(pcm)), sr, SAMPLE_RATE)


def peak_safe(pcm: np.ndarray) -> np.ndarray:
    """Scale down audio whose peak exceeds full scale instead of clipping it (clipping adds distortion).

    Non-finite samples are an upstream bug, so they raise rather than being silently zeroed.
    """
    x = np.asarray(pcm, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or inf samples")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x / peak if peak > 1.0 else x


def encode_flac(pcm: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Encode mono float audio as 16-bit FLAC bytes; identical PCM gives identical bytes."""
    x = peak_safe(to_mono(pcm))
    ints = np.round(x.astype(np.float64) * np.iinfo(np.int16).max).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, ints, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decode any container libsndfile reads (FLAC, WAV, ...) to mono float32 and its sample rate."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        # 16-bit files are read as integers so that decoding is the exact inverse of `encode_flac`.
        pcm = f.read(dtype="int16" if f.subtype == "PCM_16" else "float32", always_2d=False)
        sr = f.samplerate
    return np.ascontiguousarray(to_mono(as_float32(pcm)), dtype=np.float32), int(sr)
