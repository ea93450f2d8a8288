"""Sample-format conversion and FLAC round trips of `stages.audio_io`."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stages.audio_io import (
    SAMPLE_RATE,
    as_float32,
    decode_audio,
    encode_flac,
    peak_safe,
    resample,
    to_mono,
    to_pipeline_format,
)


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_resample_keeps_duration_and_pitch() -> None:
    y = resample(_sine(440.0, 22050, 1.0), 22050)
    assert y.dtype == np.float32 and abs(len(y) - SAMPLE_RATE) <= 1
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(y)
    assert abs(peak_hz - 440.0) < 2.0


def test_to_pipeline_format_downmixes_scales_ints_and_resamples() -> None:
    left = (_sine(300.0, 8000, 0.5) * 32767).astype(np.int16)
    stereo = np.stack([left, left], axis=1)
    y = to_pipeline_format(stereo, 8000)
    assert y.ndim == 1 and y.dtype == np.float32 and abs(len(y) - 8000) <= 1
    assert 0.45 < np.max(np.abs(y)) < 0.55


def test_to_mono_rejects_3d() -> None:
    with pytest.raises(ValueError, match="shape"):
        to_mono(np.zeros((2, 2, 2)))


def test_as_float32_is_inverse_of_int16_full_scale() -> None:
    assert as_float32(np.array([32767, 0], dtype=np.int16)).tolist() == [1.0, 0.0]


def test_peak_safe_scales_instead_of_clipping_and_rejects_nan() -> None:
    x = np.array([0.5, -2.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(peak_safe(x), [0.25, -1.0, 0.5])
    quiet = np.array([0.1, -0.2], dtype=np.float32)
    np.testing.assert_array_equal(peak_safe(quiet), quiet)
    with pytest.raises(ValueError, match="NaN"):
        peak_safe(np.array([0.0, np.nan], dtype=np.float32))


def test_flac_round_trip_is_exact_to_16_bits_and_byte_stable() -> None:
    x = np.random.default_rng(0).uniform(-0.9, 0.9, SAMPLE_RATE).astype(np.float32)
    data = encode_flac(x)
    assert data == encode_flac(x.copy())
    y, sr = decode_audio(data)
    assert sr == SAMPLE_RATE and y.dtype == np.float32
    assert np.max(np.abs(y - x)) <= 0.5 / 32767 + 1e-7
    assert encode_flac(y) == data  # decode is the exact inverse: re-encoding is a fixed point


def test_flac_bytes_identical_across_processes() -> None:
    code = (
        "import hashlib, numpy as np; from stages.audio_io import encode_flac;"
        "x = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.2;"
        "print(hashlib.sha256(encode_flac(x)).hexdigest())"
    )
    here = encode_flac(np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.2)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hashlib.sha256(here).hexdigest()


def test_encode_flac_does_not_wrap_loud_audio() -> None:
    y, _ = decode_audio(encode_flac(np.array([0.0, 1.5, -3.0], dtype=np.float32)))
    np.testing.assert_allclose(y, [0.0, 0.5, -1.0], atol=1e-4)


def test_decode_audio_reads_float_wav_and_downmixes() -> None:
    buf = io.BytesIO()
    sf.write(buf, np.stack([np.full(100, 0.2), np.full(100, 0.4)], axis=1), 22050, format="WAV", subtype="FLOAT")
    y, sr = decode_audio(buf.getvalue())
    assert sr == 22050 and y.shape == (100,)
    np.testing.assert_allclose(y, 0.3, atol=1e-6)
