"""Procedurally generated, labelled non-speech clips for the sound-event and sound-caption tasks.

Each class is a small synthesiser with parameters drawn at random within the class (pitch, count, rate,
direction, level, timing), and its caption is written from those same parameters ("three short high-pitched
beeps", "a rising chirp followed by silence"), so captioning is learnable: every word in a caption is audible
in its clip. Clips are 16 kHz mono float32, 1-3 s, and a pure function of `(label, seed)`: the same pair
always gives the same samples and caption, in any process (the generator is seeded from the label's CRC32,
not Python's salted `hash`).

    pcm, caption = generate_sound("beeps", seed=7)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from stages.audio_io import SAMPLE_RATE

MIN_SECONDS, MAX_SECONDS = 1.0, 3.0
#: A pause at the end is either named in the caption and at least this long, or unnamed and at most
#: `_MAX_UNNAMED_GAP_S`, so "followed by silence" is never a judgement call.
_NAMED_SILENCE_S = 0.6
_MAX_UNNAMED_GAP_S = 0.2
_SILENCE_WORDS = " followed by silence"
_COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_TIMES_WORDS = {1: "once", 2: "twice", 3: "three times"}

#: A class synthesiser: draws its parameters from the generator, returns (float64 samples, caption).
Synth = Callable[[np.random.Generator], tuple[np.ndarray, str]]

#: Pitch words and their frequency bands (Hz); the gaps between bands keep every word unambiguous.
_PITCH_BANDS = {"low-pitched": (150.0, 330.0), "mid-pitched": (450.0, 950.0), "high-pitched": (1300.0, 2500.0)}


def _pitch(rng: np.random.Generator, words: tuple[str, ...] = tuple(_PITCH_BANDS)) -> tuple[float, str]:
    """A frequency drawn log-uniformly inside the band of a randomly chosen pitch word, and the word."""
    word = words[int(rng.integers(0, len(words)))]
    low, high = _PITCH_BANDS[word]
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))), word


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _ramp(x: np.ndarray, attack_s: float = 0.005, release_s: float = 0.005) -> np.ndarray:
    """Raised-cosine fade in/out so an event starts and stops without a click."""
    n = len(x)
    env = np.ones(n)
    attack, release = min(int(attack_s * SAMPLE_RATE), n // 2), min(int(release_s * SAMPLE_RATE), n // 2)
    if attack:
        env[:attack] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, attack))
    if release:
        env[n - release :] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, release))
    return x * env


def _clip_length(rng: np.random.Generator, at_least_s: float = MIN_SECONDS) -> int:
    seconds = rng.uniform(max(MIN_SECONDS, min(at_least_s, MAX_SECONDS)), MAX_SECONDS)
    return int(round(seconds * SAMPLE_RATE))


def _place(events: list[np.ndarray], onsets_s: list[float], n: int) -> np.ndarray:
    """Mix events into `n` samples of silence at the given onsets (later events may overlap earlier ones)."""
    out = np.zeros(n)
    for event, onset in zip(events, onsets_s):
        pos = int(onset * SAMPLE_RATE)
        end = min(n, pos + len(event))
        out[pos:end] += event[: end - pos]
    return out


def _onsets(count: int, period_s: float, lead_s: float = 0.0) -> list[float]:
    return [lead_s + i * period_s for i in range(count)]


def _silence_after(rng: np.random.Generator, n: int) -> int:
    """Samples of silence to end an `n`-sample clip with: none, or a clearly audible pause (half the time)."""
    if rng.integers(0, 2):
        return 0
    longest = min(2 * _NAMED_SILENCE_S, n / SAMPLE_RATE - 0.3)
    return int(rng.uniform(_NAMED_SILENCE_S, max(_NAMED_SILENCE_S, longest)) * SAMPLE_RATE)


def _tone(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    freq, pitch = _pitch(rng)
    n = _clip_length(rng)
    silence = _silence_after(rng, n)
    harmonics = rng.integers(1, 4)  # pure sine up to a buzzier 3-harmonic tone
    t = _t(n - silence)
    tone = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    out = np.zeros(n)
    out[: n - silence] = _ramp(tone, 0.01, 0.01)
    return out, f"a steady {pitch} tone" + (_SILENCE_WORDS if silence else "")


def _chirp(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    count = int(rng.integers(1, 4))
    rising = bool(rng.integers(0, 2))
    low = rng.uniform(250, 700)
    high = low * rng.uniform(3, 6)
    chirp_s, gap_s = rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.25)
    length = int(chirp_s * SAMPLE_RATE)
    t = _t(length)
    start, stop = (low, high) if rising else (high, low)
    # Exponential sweep: instantaneous frequency start * (stop/start)^(t/T), phase is its integral.
    k = np.log(stop / start) / chirp_s
    chirp = _ramp(np.sin(2 * np.pi * start * (np.exp(k * t) - 1) / k))
    busy = count * chirp_s + (count - 1) * gap_s  # at most 2 s
    tight = busy + rng.uniform(0.0, _MAX_UNNAMED_GAP_S)
    silent_end = tight < MIN_SECONDS or bool(rng.integers(0, 2))
    padded = busy + rng.uniform(_NAMED_SILENCE_S, 2 * _NAMED_SILENCE_S)
    seconds = float(np.clip(padded, MIN_SECONDS, MAX_SECONDS)) if silent_end else tight
    n = int(round(seconds * SAMPLE_RATE))
    out = _place([chirp] * count, _onsets(count, chirp_s + gap_s), n)
    noun = "chirp" if count == 1 else "chirps"
    amount = "a" if count == 1 else _COUNT_WORDS[count]
    return out, f"{amount} {'rising' if rising else 'falling'} {noun}" + (_SILENCE_WORDS if silent_end else "")


def _beeps(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    long_beeps = bool(rng.integers(0, 2))
    count = int(rng.integers(2, 6 if long_beeps else 7))
    beep_s = rng.uniform(0.25, 0.35) if long_beeps else rng.uniform(0.06, 0.12)
    gap_s = rng.uniform(0.12, 0.2)
    freq, pitch = _pitch(rng, ("mid-pitched", "high-pitched"))
    carrier = np.sin(2 * np.pi * freq * _t(int(beep_s * SAMPLE_RATE)))
    beep = _ramp(0.6 * np.sign(carrier) + 0.4 * carrier)  # part square wave: the buzz of an electronic beeper
    busy = count * beep_s + (count - 1) * gap_s
    n = _clip_length(rng, busy + 0.1)
    out = _place([beep] * count, _onsets(count, beep_s + gap_s, rng.uniform(0.0, 0.1)), n)
    length_word = "long" if long_beeps else "short"
    return out, f"{_COUNT_WORDS[count]} {length_word} {pitch} beeps"


def _siren(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    fast = bool(rng.integers(0, 2))
    rate = rng.uniform(3.0, 6.0) if fast else rng.uniform(0.5, 1.0)
    centre = rng.uniform(700, 1100)
    depth = centre * rng.uniform(0.25, 0.4)
    n = _clip_length(rng, 2.0)
    t = _t(n)
    freq = centre + depth * np.sin(2 * np.pi * rate * t - np.pi / 2)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    siren = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)
    return _ramp(siren, 0.05, 0.05), "a fast yelping siren" if fast else "a slowly wailing siren"


def _bell(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    strikes = int(rng.integers(1, 4))
    register = ("low", "high")[int(rng.integers(0, 2))]
    low, high = (250.0, 450.0) if register == "low" else (800.0, 1500.0)
    freq = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    decay_s = rng.uniform(0.15, 0.3)
    interval_s = rng.uniform(0.55, 0.8)  # > 1.8 decay times: each strike is heard as a new attack
    ring_n = int(min(3 * decay_s, 1.5) * SAMPLE_RATE)
    t = _t(ring_n)
    # Partials of a struck bar/bell: inharmonic ratios, higher partials die away faster.
    ratios, weights = (1.0, 2.0, 2.76, 5.40, 8.93), (1.0, 0.6, 0.45, 0.25, 0.15)
    ring = sum(
        w * np.sin(2 * np.pi * freq * r * t) * np.exp(-t * np.sqrt(r) / decay_s) for r, w in zip(ratios, weights)
    )
    ring = _ramp(ring, 0.001, 0.02)
    n = _clip_length(rng, (strikes - 1) * interval_s + 0.8)
    out = _place([ring] * strikes, _onsets(strikes, interval_s), n)  # each strike rings over the last
    return out, f"a {register} bell rings {_TIMES_WORDS[strikes]}"


def _knock(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    count = int(rng.integers(2, 6))
    spacing = rng.uniform(0.18, 0.32)
    knock_n = int(0.08 * SAMPLE_RATE)
    t = _t(knock_n)
    knocks = []
    for _ in range(count):
        body = np.sin(2 * np.pi * rng.uniform(90, 200) * t) * np.exp(-t / rng.uniform(0.012, 0.025))
        thud = np.convolve(rng.standard_normal(knock_n), np.ones(8) / 8, mode="same") * np.exp(-t / 0.004)
        knocks.append(_ramp(body + 0.5 * thud, 0.0005, 0.01))
    n = _clip_length(rng, count * spacing + 0.1)
    out = _place(knocks, _onsets(count, spacing, rng.uniform(0.0, 0.2)), n)
    return out, f"{_COUNT_WORDS[count]} knocks on a door"


def _clicks(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    fast = bool(rng.integers(0, 2))
    rate = rng.uniform(10.0, 20.0) if fast else rng.uniform(2.5, 5.0)
    n = _clip_length(rng)
    out = np.zeros(n)
    click = np.diff(rng.standard_normal(int(0.0015 * SAMPLE_RATE) + 1))  # ~1.5 ms broadband impulse
    for onset in np.arange(rng.uniform(0, 0.1), n / SAMPLE_RATE - 0.01, 1.0 / rate):
        pos = int(onset * SAMPLE_RATE)
        out[pos : pos + len(click)] += click[: n - pos]
    return out, "rapid clicking" if fast else "slow, regular clicks"


def _shape_noise(noise: np.ndarray, rng: np.random.Generator, colour: str) -> tuple[np.ndarray, str]:
    """Give a noise bed a level and an envelope, and describe both."""
    n = len(noise)
    loud = bool(rng.integers(0, 2))
    shape = ("steady", "fades in", "fades out")[int(rng.integers(0, 3))]
    env = np.ones(n)
    if shape == "fades in":
        env = np.linspace(0.0, 1.0, n) ** 2
    elif shape == "fades out":
        env = np.linspace(1.0, 0.0, n) ** 2
    x = _ramp(noise / np.std(noise) * env, 0.02, 0.02)
    x = x / np.max(np.abs(x)) * (rng.uniform(0.7, 0.95) if loud else rng.uniform(0.08, 0.15))
    level = "loud" if loud else "soft"
    caption = f"{level} {colour} noise" if shape == "steady" else f"{level} {colour} noise that {shape}"
    return x, caption


def _white_noise(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    return _shape_noise(rng.standard_normal(_clip_length(rng)), rng, "white")


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain, nothing below 20 Hz (inaudible
    rumble would otherwise dominate the level)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    audible = f >= 20.0
    spectrum[audible] /= np.sqrt(f[audible])
    spectrum[~audible] = 0.0
    return np.fft.irfft(spectrum, n)


def _pink_noise(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    return _shape_noise(_pink(rng, _clip_length(rng)), rng, "pink")


def _rain(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    heavy = bool(rng.integers(0, 2))
    n = _clip_length(rng, 1.5)
    rate = rng.uniform(150, 300) if heavy else rng.uniform(15, 40)  # drops per second
    out = _pink(rng, n) * (0.02 if heavy else 0.005)
    drop_n = int(0.012 * SAMPLE_RATE)
    t = _t(drop_n)
    for onset in rng.uniform(0, n / SAMPLE_RATE, rng.poisson(rate * n / SAMPLE_RATE)):
        pos = int(onset * SAMPLE_RATE)
        drop = np.sin(2 * np.pi * rng.uniform(1500, 5000) * t) * np.exp(-t / rng.uniform(0.001, 0.003))
        end = min(n, pos + drop_n)
        out[pos:end] += rng.uniform(0.2, 1.0) * drop[: end - pos]
    return _ramp(out, 0.05, 0.05), "heavy rain pouring down" if heavy else "light rain dripping"


_SYNTHS: dict[str, Synth] = {
    "tone": _tone,
    "chirp": _chirp,
    "beeps": _beeps,
    "siren": _siren,
    "bell": _bell,
    "knock": _knock,
    "clicks": _clicks,
    "white_noise": _white_noise,
    "pink_noise": _pink_noise,
    "rain": _rain,
}
#: Class labels, each also a word (or two) that appears in every caption of its class.
SOUND_CLASSES: tuple[str, ...] = tuple(_SYNTHS)


def generate_sound(label: str, seed: int) -> tuple[np.ndarray, str]:
    """A 1-3 s, 16 kHz mono float32 clip of class `label` and its caption; a pure function of (label, seed)."""
    try:
        synth = _SYNTHS[label]
    except KeyError:
        raise ValueError(f"unknown sound class {label!r}; known: {', '.join(SOUND_CLASSES)}") from None
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
    pcm, caption = synth(rng)
    peak = float(np.max(np.abs(pcm)))
    if label not in ("white_noise", "pink_noise"):  # noise classes set (and caption) their own level
        pcm = pcm / peak * rng.uniform(0.5, 0.9)
    return np.ascontiguousarray(pcm, dtype=np.float32), caption
