"""Embedded audio codec (token counts, determinism, batching, save/load, decoding) and the GLM-4-Voice adapter."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.audio_codec import AudioCodec, CodecConfig, ExternalCodec, ExternalCodecUnavailable, load_glm4voice
from stages.audio_codec import codec as codec_module
from stages.audio_codec.external import GLM4_DECODER_FILES, GLM4_TOKENIZER_FILES
from stages.config import ParamsError

SR = 16000
TINY = CodecConfig(codebook_size=16, decoder_width=32, decoder_steps=120, kmeans_iters=10, griffin_lim_iters=8)


def _tone(freq: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic tone with vibrato and a little noise: speech-like enough for a mel codebook."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * freq * (t + 0.002 * np.sin(2 * np.pi * 5 * t))
    x = sum(0.3 / k * np.sin(k * phase) for k in (1, 2, 3))
    x = x * np.clip(np.sin(np.pi * t / seconds) * 3, 0, 1)
    return (x + 0.003 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


def _corpus() -> list[np.ndarray]:
    return [_tone(f, s, i) for i, (f, s) in enumerate([(220, 1.0), (330, 0.7), (500, 1.2), (800, 0.9),
                                                         (1200, 0.6), (1800, 1.1), (150, 0.8), (2500, 0.5)])]


@pytest.fixture(scope="module")
def codec() -> AudioCodec:
    return AudioCodec.fit(_corpus(), TINY, seed=0)


@pytest.mark.parametrize("rate", [50.0, 25.0, 12.5])
def test_token_count_and_decoded_length_follow_the_rate(rate: float) -> None:
    cfg = dataclasses.replace(TINY, token_rate_hz=rate, decoder="centroid")
    c = AudioCodec.fit(_corpus(), cfg, seed=0)
    per_token = int(SR / rate)
    assert cfg.samples_per_token == per_token
    for n in (1, per_token - 1, per_token, 3 * per_token + 1, SR):
        codes = c.encode(_tone(300, 1.0, 0)[:n])
        assert codes.dtype == np.int64 and codes.shape == (-(-n // per_token),)
        assert c.decode(codes).shape == (codes.size * per_token,)


def test_encode_is_deterministic_and_fit_is_seeded(codec: AudioCodec) -> None:
    clip = _tone(400, 1.0, 5)
    np.testing.assert_array_equal(codec.encode(clip), codec.encode(clip))
    again = AudioCodec.fit(_corpus(), TINY, seed=0)
    torch.testing.assert_close(again.centroids_KD, codec.centroids_KD, rtol=0, atol=0)
    np.testing.assert_array_equal(again.decode(codec.encode(clip)), codec.decode(codec.encode(clip)))
    other = AudioCodec.fit(_corpus(), dataclasses.replace(TINY, decoder="centroid"), seed=1)
    assert not torch.equal(other.centroids_KD, codec.centroids_KD)


def test_batched_encoding_equals_one_clip_at_a_time(codec: AudioCodec, monkeypatch: pytest.MonkeyPatch) -> None:
    clips = _corpus()[::-1] + [np.zeros(0, dtype=np.float32), _tone(700, 0.05, 9)]
    single = [codec.encode(c) for c in clips]
    for batch_samples in (codec_module.BATCH_SAMPLES, SR):  # one group, then several groups
        monkeypatch.setattr(codec_module, "BATCH_SAMPLES", batch_samples)
        batched = codec.encode_batch(clips)
        assert len(batched) == len(clips)
        for a, b in zip(batched, single):
            np.testing.assert_array_equal(a, b)
    assert single[-2].size == 0


def test_integer_pcm_is_scaled_like_float(codec: AudioCodec) -> None:
    clip = _tone(600, 0.8, 2)
    as_int16 = np.round(clip * 32768).clip(-32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(codec.encode(as_int16), codec.encode(as_int16.astype(np.float32) / 32768))


def test_save_load_round_trip(codec: AudioCodec, tmp_path: Path) -> None:
    codec.save(tmp_path / "codec")
    loaded = AudioCodec.load(tmp_path / "codec")
    assert loaded.config == codec.config
    clip = _tone(450, 1.0, 3)
    codes = codec.encode(clip)
    np.testing.assert_array_equal(loaded.encode(clip), codes)
    np.testing.assert_array_equal(loaded.decode(codes), codec.decode(codes))
    assert not list((tmp_path / "codec").glob("*.tmp"))


def test_load_is_strict(codec: AudioCodec, tmp_path: Path) -> None:
    d = codec.save(tmp_path / "codec")
    meta = json.loads((d / "codec_config.json").read_text())
    meta["config"]["hop"] = 1
    (d / "codec_config.json").write_text(json.dumps(meta))
    with pytest.raises(ParamsError, match="hop"):
        AudioCodec.load(d)
    (d / "codec.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="codec.safetensors"):
        AudioCodec.load(d)


def test_decode_gives_finite_bounded_audio_with_the_input_pitch(codec: AudioCodec) -> None:
    for freq in (220.0, 1800.0):
        clip = _tone(freq, 1.0, 4)
        out = codec.decode(codec.encode(clip))
        assert out.dtype == np.float32 and np.isfinite(out).all() and np.abs(out).max() <= 1.0
        assert np.sqrt(np.mean(out**2)) > 0.02
        spectrum = np.abs(np.fft.rfft(out))
        peak = np.fft.rfftfreq(out.size, 1 / SR)[spectrum.argmax()]
        assert abs(peak - freq) < 0.1 * freq


def test_learned_decoder_fits_the_mels_better_than_centroids(codec: AudioCodec) -> None:
    unsmoothed = dataclasses.replace(TINY, smoothing=0.0)
    learned = AudioCodec(unsmoothed, codec.centroids_KD, codec.decoder)
    centroid = AudioCodec(dataclasses.replace(unsmoothed, decoder="centroid"), codec.centroids_KD)
    mel = codec_module.MelSpectrogram(SR, TINY.n_fft, TINY.hop_length, TINY.n_mels)
    errors = {"learned": 0.0, "centroid": 0.0}
    for clip in _corpus():
        target = codec_module.token_vectors(mel, TINY, [clip])[0].reshape(-1, TINY.n_mels).float()
        codes = codec.encode(clip)
        for name, c in (("learned", learned), ("centroid", centroid)):
            errors[name] += float((c.decode_log_mel(codes) - target).abs().mean())
    assert errors["learned"] < 0.97 * errors["centroid"]


def test_fit_stops_reading_at_max_fit_tokens() -> None:
    cfg = dataclasses.replace(TINY, max_fit_tokens=40, decoder="centroid")  # 25 Hz: two 1 s clips suffice

    def clips() -> Iterator[np.ndarray]:
        yield _tone(300, 1.0, 0)
        yield _tone(900, 1.0, 1)
        raise AssertionError("fit read past max_fit_tokens")

    assert AudioCodec.fit(clips(), cfg, seed=0).codebook_size == 16


def test_fit_with_fewer_vectors_than_codes_says_so() -> None:
    with pytest.raises(ValueError, match="at least as many vectors as codes"):
        AudioCodec.fit([_tone(300, 0.2, 0)], TINY, seed=0)


def test_decode_rejects_codes_outside_the_codebook(codec: AudioCodec) -> None:
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        codec.decode(np.array([0, 16]))
    assert codec.decode(np.zeros(0, dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"token_rate_hz": 30.0}, "multiple of token_rate_hz"), ({"frame_rate_hz": 48.0, "token_rate_hz": 24.0}, "sample_rate"),
     ({"smoothing": 0.5}, "smoothing"), ({"n_fft": 512}, "twice the hop"), ({"codebook_size": 1}, "codebook_size")],
)
def test_config_checks(changes: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(CodecConfig(), **changes)


# ---- full profile: GLM-4-Voice adapter -----------------------------------------------------------------------


def _model_dirs(tmp_path: Path) -> tuple[Path, Path]:
    tok, dec = tmp_path / "glm-4-voice-tokenizer", tmp_path / "glm-4-voice-decoder"
    for d, files in ((tok, GLM4_TOKENIZER_FILES), (dec, GLM4_DECODER_FILES)):
        d.mkdir()
        for name in files:
            (d / name).write_bytes(b"")
    return tok, dec


def test_glm4voice_missing_file_is_named(tmp_path: Path) -> None:
    tok, dec = _model_dirs(tmp_path)
    (dec / "hift.pt").unlink()
    with pytest.raises(ExternalCodecUnavailable, match=r"decoder.*lacks hift\.pt"):
        load_glm4voice(tok, dec)
    with pytest.raises(ExternalCodecUnavailable, match="does not exist"):
        load_glm4voice(tmp_path / "nowhere", dec)


def test_glm4voice_missing_upstream_code_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "speech_tokenizer", None)
    with pytest.raises(ExternalCodecUnavailable, match="speech_tokenizer.modeling_whisper"):
        load_glm4voice(*_model_dirs(tmp_path))


def test_glm4voice_adapter_against_fake_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The glue calls the upstream loaders with the directory files and maps their outputs to our contract."""
    tok, dec = _model_dirs(tmp_path)
    seen: dict[str, object] = {}

    class FakeEncoder:
        @classmethod
        def from_pretrained(cls, path: str) -> FakeEncoder:
            seen["encoder"] = path
            return cls()

        def eval(self) -> FakeEncoder:
            return self

        def to(self, device: str) -> FakeEncoder:
            return self

    def extract_speech_token(model: object, features: object, utts: list[tuple[torch.Tensor, int]]) -> list[list[int]]:
        assert all(sr == SR and audio.ndim == 2 for audio, sr in utts)
        return [[int(audio.shape[1] // 1280) % 16384] * (audio.shape[1] // 1280) for audio, _ in utts]

    class FakeAudioDecoder:
        def __init__(self, config_path: str, flow_ckpt_path: str, hift_ckpt_path: str, device: str) -> None:
            seen["decoder"] = (config_path, flow_ckpt_path, hift_ckpt_path)

        def offline_inference(self, token: torch.Tensor) -> torch.Tensor:
            return torch.full((1, token.shape[1] * 1764), 0.5)  # 12.5 Hz at 22.05 kHz

    class FakeFeatures:
        @classmethod
        def from_pretrained(cls, path: str) -> FakeFeatures:
            return cls()

    import transformers

    monkeypatch.setitem(sys.modules, "speech_tokenizer", types.ModuleType("speech_tokenizer"))
    monkeypatch.setitem(sys.modules, "speech_tokenizer.modeling_whisper",
                        types.SimpleNamespace(WhisperVQEncoder=FakeEncoder))
    monkeypatch.setitem(sys.modules, "speech_tokenizer.utils",
                        types.SimpleNamespace(extract_speech_token=extract_speech_token))
    monkeypatch.setitem(sys.modules, "flow_inference", types.SimpleNamespace(AudioDecoder=FakeAudioDecoder))
    monkeypatch.setattr(transformers, "WhisperFeatureExtractor", FakeFeatures, raising=False)

    codec = load_glm4voice(tok, dec)
    assert seen == {"encoder": str(tok), "decoder": (str(dec / "config.yaml"), str(dec / "flow.pt"), str(dec / "hift.pt"))}
    assert (codec.token_rate_hz, codec.codebook_size) == (12.5, 16384)
    codes = codec.encode_batch([np.zeros(SR, dtype=np.float32), np.zeros(2 * SR, dtype=np.float32)])
    assert [c.tolist() for c in codes] == [[12] * 12, [25] * 25]
    pcm = codec.decode(codes[1])
    assert pcm.dtype == np.float32 and pcm.shape == (25 * 1280,)  # 22.05 kHz resampled to 16 kHz
    assert np.allclose(pcm[1000:-1000], 0.5, atol=1e-3)


def test_external_codec_rejects_out_of_range_codes() -> None:
    bad = ExternalCodec(lambda clips: [[0, 99]] * len(clips), lambda c: c, 12.5, 16, 16000)
    with pytest.raises(RuntimeError, match=r"outside \[0, 16\)"):
        bad.encode(np.zeros(10, dtype=np.float32))
    with pytest.raises(RuntimeError, match="2 code sequences for 1 clips"):
        ExternalCodec(lambda clips: [[0], [1]], lambda c: c, 12.5, 16, 16000).encode(np.zeros(10, dtype=np.float32))
