"""Procedural sound clips: format, determinism, separable classes, and captions that match what is audible."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from stages.audio_io import SAMPLE_RATE
from stages.sounds import SOUND_CLASSES, generate_sound

SEEDS = range(12)
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _frames(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame
    return x[: n * frame].reshape(n, frame)


def _envelope(x: np.ndarray, frame_s: float = 0.005) -> np.ndarray:
    return np.sqrt((_frames(x, int(frame_s * SAMPLE_RATE)) ** 2).mean(axis=1))


def _count_events(x: np.ndarray) -> int:
    """Onsets: 5 ms frames above 25 % of the peak envelope that jump 3x over the quietest of the previous 30 ms
    (so a bell struck while still ringing counts again), at least 40 ms after the previous onset."""
    env = _envelope(x)
    count, last = 0, -100
    for i in range(len(env)):
        before = env[max(0, i - 6) : i]
        quiet_before = before.min() if len(before) else 0.0
        if env[i] > 0.25 * env.max() and env[i] > 3 * quiet_before and i - last >= 8:
            count, last = count + 1, i
    return count


def _dominant_hz(x: np.ndarray, frame: int = 512) -> np.ndarray:
    """Strongest frequency of each frame that carries sound."""
    frames = _frames(x, frame)
    loud = np.sqrt((frames**2).mean(axis=1)) > 0.1 * np.sqrt((frames**2).mean(axis=1)).max()
    spectrum = np.abs(np.fft.rfft(frames[loud] * np.hanning(frame), axis=1))
    return np.fft.rfftfreq(frame, 1.0 / SAMPLE_RATE)[spectrum.argmax(axis=1)]


def _features(x: np.ndarray) -> np.ndarray:
    """Crude clip statistics: spectral centroid and flatness, active fraction, envelope spread, pitch spread, crest."""
    frames = _frames(x, 400)
    rms = np.sqrt((frames**2).mean(axis=1)) + 1e-9
    active = rms > 0.1 * rms.max()
    power = (np.abs(np.fft.rfft(frames * np.hanning(400), axis=1)) ** 2 + 1e-12)[active].mean(axis=0)
    freqs = np.fft.rfftfreq(400, 1.0 / SAMPLE_RATE)
    centroid = (power * freqs).sum() / power.sum()
    flatness = np.exp(np.log(power).mean()) / power.mean()
    pitch_spread = np.std(np.log(_dominant_hz(x, 400) + 50.0))
    crest = np.abs(x).max() / np.sqrt((x**2).mean())
    return np.array(
        [
            np.log(centroid),
            np.log(flatness),
            active.mean(),
            np.log(rms.std() / rms.mean() + 1e-3),
            pitch_spread,
            np.log(crest),
        ]
    )


@pytest.mark.parametrize("label", SOUND_CLASSES)
def test_clip_format_and_caption_names_the_class(label: str) -> None:
    keyword = label.replace("_", " ").removesuffix("s")  # beeps -> beep, white_noise -> white noise
    for seed in SEEDS:
        pcm, caption = generate_sound(label, seed)
        assert pcm.dtype == np.float32 and pcm.ndim == 1 and np.all(np.isfinite(pcm))
        assert 1.0 <= len(pcm) / SAMPLE_RATE <= 3.0
        assert 0.05 <= np.max(np.abs(pcm)) <= 1.0
        assert keyword in caption, f"{label} seed {seed}: {caption!r}"


@pytest.mark.parametrize("label", SOUND_CLASSES)
def test_same_seed_same_clip_other_seed_other_clip(label: str) -> None:
    pcm, caption = generate_sound(label, 5)
    again, caption_again = generate_sound(label, 5)
    np.testing.assert_array_equal(pcm, again)
    assert caption == caption_again
    other, _ = generate_sound(label, 6)
    assert len(other) != len(pcm) or not np.array_equal(other, pcm)


def test_clips_identical_across_processes() -> None:
    code = (
        "import hashlib; from stages.sounds import SOUND_CLASSES, generate_sound;"
        "h = hashlib.sha256();"
        "[h.update(generate_sound(c, 3)[0].tobytes() + generate_sound(c, 3)[1].encode()) for c in SOUND_CLASSES];"
        "print(h.hexdigest())"
    )
    here = hashlib.sha256()
    for label in SOUND_CLASSES:
        pcm, caption = generate_sound(label, 3)
        here.update(pcm.tobytes() + caption.encode())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here.hexdigest()


def test_classes_are_separable_by_simple_spectral_statistics() -> None:
    """Leave-one-out nearest class centroid on six standardised statistics; chance is 10 %."""
    feats = np.array([_features(generate_sound(label, seed)[0]) for label in SOUND_CLASSES for seed in SEEDS])
    labels = np.repeat(np.arange(len(SOUND_CLASSES)), len(SEEDS))
    z = (feats - feats.mean(axis=0)) / feats.std(axis=0)
    correct = 0
    for i in range(len(z)):
        rest = np.arange(len(z)) != i
        centroids = np.array([z[rest & (labels == k)].mean(axis=0) for k in range(len(SOUND_CLASSES))])
        correct += int(np.argmin(((centroids - z[i]) ** 2).sum(axis=1)) == labels[i])
    assert correct / len(z) >= 0.85


def test_unknown_class_and_negative_seed_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown sound class 'dog'"):
        generate_sound("dog", 0)
    with pytest.raises(ValueError, match="non-negative"):
        generate_sound("tone", -1)


# --- Captions describe the clip: each attribute a caption states is measured back from the samples.


@pytest.mark.parametrize("label", ["beeps", "knock", "chirp", "bell"])
def test_caption_counts_match_audible_events(label: str) -> None:
    for seed in SEEDS:
        pcm, caption = generate_sound(label, seed)
        first = caption.split()[0]
        if label == "bell":
            stated = {"once": 1, "twice": 2, "three": 3}[caption.split("rings ")[1].split()[0]]
        else:
            stated = 1 if first == "a" else _WORDS[first]
        assert _count_events(pcm) == stated, f"{label} seed {seed}: {caption!r}"


def test_chirp_direction_matches_caption() -> None:
    for seed in SEEDS:
        pcm, caption = generate_sound("chirp", seed)
        first_chirp = pcm[: int(0.2 * SAMPLE_RATE)]  # every chirp lasts at least 0.2 s
        pitch = _dominant_hz(first_chirp, 256)
        rising = pitch[-1] > pitch[0]
        assert ("rising" in caption) == rising and ("falling" in caption) != rising, f"seed {seed}: {caption!r}"


def test_trailing_silence_is_captioned_exactly_when_present() -> None:
    for label in ("tone", "chirp"):
        for seed in SEEDS:
            pcm, caption = generate_sound(label, seed)
            tail = pcm[-int(0.45 * SAMPLE_RATE) :]
            silent_tail = np.max(np.abs(tail)) < 1e-4
            assert silent_tail == ("followed by silence" in caption), f"{label} seed {seed}: {caption!r}"


def test_pitch_words_match_the_dominant_frequency() -> None:
    for label in ("tone", "beeps"):
        for seed in SEEDS:
            pcm, caption = generate_sound(label, seed)
            hz = float(np.median(_dominant_hz(pcm, 2048)))
            word = "low-pitched" if hz < 400 else "high-pitched" if hz > 1100 else "mid-pitched"
            assert word in caption, f"{label} seed {seed}: {hz:.0f} Hz but {caption!r}"


def test_rate_words_match_measured_rates() -> None:
    for seed in SEEDS:
        pcm, caption = generate_sound("clicks", seed)
        per_second = _count_events(pcm) / (len(pcm) / SAMPLE_RATE)
        assert (per_second > 8) == ("rapid" in caption), f"clicks seed {seed}: {per_second:.1f}/s, {caption!r}"
        pcm, caption = generate_sound("siren", seed)
        track = _dominant_hz(pcm, 256)  # one pitch value per 16 ms
        modulation = np.abs(np.fft.rfft((track - track.mean()) * np.hanning(len(track)), 4096))
        sweeps_per_second = np.fft.rfftfreq(4096, 256 / SAMPLE_RATE)[1 + np.argmax(modulation[1:])]
        message = f"siren seed {seed}: {sweeps_per_second:.1f}/s, {caption!r}"
        assert (sweeps_per_second > 2) == ("fast" in caption), message


def test_noise_level_and_fade_words_match_the_envelope() -> None:
    for label in ("white_noise", "pink_noise"):
        for seed in SEEDS:
            pcm, caption = generate_sound(label, seed)
            rms = float(np.sqrt(np.mean(pcm**2)))
            assert ("loud" in caption) == (rms > 0.05), f"{label} seed {seed}: rms {rms:.3f}, {caption!r}"
            quarter = len(pcm) // 4
            head, tail = (float(np.sqrt(np.mean(part**2))) for part in (pcm[:quarter], pcm[-quarter:]))
            assert ("fades in" in caption) == (tail > 3 * head), f"{label} seed {seed}: {caption!r}"
            assert ("fades out" in caption) == (head > 3 * tail), f"{label} seed {seed}: {caption!r}"


def test_heavy_rain_is_denser_than_light_rain() -> None:
    density = {"heavy": [], "light": []}
    for seed in SEEDS:
        pcm, caption = generate_sound("rain", seed)
        env = _envelope(pcm, 0.002)
        density[caption.split()[0]].append(float(np.mean(env > 0.2 * env.max())))
    assert density["heavy"] and density["light"]
    assert min(density["heavy"]) > max(density["light"])
