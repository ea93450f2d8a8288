"""The contract every speech engine meets, and the pieces the engines share.

A backend turns `(text, voice)` into 16 kHz mono float32 PCM. `TtsBackend.synthesize` is a template method: it
cleans the text, checks the voice, calls the engine's `_render`, converts the result to the pipeline format and
rejects empty, silent or non-finite audio. Any failure surfaces as `TtsError` naming backend, voice and text, so
one bad row in a 100k-utterance shard is easy to find. Every backend is deterministic: the same `(text, voice)`
gives the same PCM (the synthesize stage's resume and DVC caching rely on it); the backend docstrings say how.

Levels are peak-normalised to `PEAK_LEVEL`: engines differ by >10 dB, and loudness carries no information the
audio tokenizer should spend codes on.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from stages.audio_io import to_pipeline_format

#: Peak level (linear, ~ -1 dBFS) every synthesized clip is scaled to.
PEAK_LEVEL = 0.9
#: Below this peak a clip counts as silent: the engine produced nothing audible.
_SILENCE_PEAK = 1e-3
_WHITESPACE = re.compile(r"\s+")
#: Typographic punctuation the ASCII-only engines (flite, festival) would otherwise skip or spell out.
_ASCII_PUNCT = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": ", ", "\u2014": ", ", "\u2026": "..."}
)


class TtsError(RuntimeError):
    """Synthesis failed; the message names backend, voice and (a prefix of) the text."""

    def __init__(self, backend: str, voice: str, text: str, reason: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{backend} voice {voice!r} failed on text {shown!r}: {reason}")
        self.backend, self.voice, self.text, self.reason = backend, voice, text, reason


class UnknownVoice(ValueError):
    """The voice is not offered by the backend (engines such as flite silently fall back, so we check first)."""


class BackendUnavailable(RuntimeError):
    """A backend cannot run here; the message says why and what to install."""


@dataclass(frozen=True, order=True)
class Voice:
    """A voice id `"<backend>:<name>"`, e.g. `espeak-ng:en-us`, `flite:slt`, `piper:joe`, `cosyvoice2:alice`."""

    backend: str
    name: str

    @classmethod
    def parse(cls, voice_id: str) -> Voice:
        backend, sep, name = voice_id.partition(":")
        if not sep or not backend or not name:
            raise ValueError(f"voice id {voice_id!r} is not of the form '<backend>:<voice>'")
        return cls(backend, name)

    def __str__(self) -> str:
        return f"{self.backend}:{self.name}"


def prepare_text(text: str) -> str:
    """NFC-normalise, drop control characters and collapse all whitespace (newlines included) to single spaces.

    Engines disagree about line breaks (espeak-ng pauses at each one, festival may start a new utterance), so
    one sentence is always handed over as one line.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    normal = unicodedata.normalize("NFC", text)
    clean = "".join(ch for ch in normal if ch.isspace() or unicodedata.category(ch)[0] != "C")
    clean = _WHITESPACE.sub(" ", clean).strip()
    if not clean:
        raise ValueError(f"nothing to synthesize in text {text!r}")
    return clean


def ascii_fold(text: str) -> str:
    """ASCII for engines that only read ASCII: `naïve “café”` -> `naive "cafe"` (accents dropped, not letters)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_PUNCT))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def stable_seed(*parts: str) -> int:
    """A 63-bit seed from strings, equal across processes (Python's `hash` is salted per process)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def run_engine(argv: Sequence[str], *, stdin: bytes | None = None, timeout_s: float) -> bytes:
    """Run an engine binary without a shell and return its stdout; raise `RuntimeError` with its stderr tail.

    Text never goes on a command line: callers pass it on stdin or in a temporary file, so quotes, leading
    dashes and newlines reach the engine as text, not as options.
    """
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{argv[0]} timed out after {timeout_s:g} s") from exc
    except OSError as exc:
        raise RuntimeError(f"could not start {argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise RuntimeError(f"{argv[0]} exited with status {proc.returncode}: {tail}")
    return proc.stdout


class TtsBackend(ABC):
    """One speech engine. Subclasses set `name` and `install_hint` and implement the abstract methods."""

    #: Registry name and voice-id prefix.
    name: ClassVar[str]
    #: What to install when `problems()` is not empty (apt or pip package, or a model directory).
    install_hint: ClassVar[str]

    @abstractmethod
    def problems(self) -> tuple[str, ...]:
        """Why this backend cannot run here (missing binary, package or model file); empty when it can."""

    @abstractmethod
    def voices(self) -> tuple[str, ...]:
        """Voice names this backend offers here (without the `<backend>:` prefix)."""

    @abstractmethod
    def default_voices(self) -> tuple[str, ...]:
        """The curated subset worth using for training data (intelligible to an ASR judge, see DESIGN §4)."""

    @abstractmethod
    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        """Engine output `(pcm, sample_rate)` for cleaned text and a known voice; raise on failure."""

    def available(self) -> bool:
        return not self.problems()

    def require(self) -> None:
        """Raise `BackendUnavailable` naming every problem and the package to install."""
        problems = self.problems()
        if problems:
            raise BackendUnavailable(
                f"TTS backend {self.name} is not available: {'; '.join(problems)}. Install: {self.install_hint}"
            )

    def has_voice(self, voice: str) -> bool:
        return voice in self.voices()

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        """16 kHz mono float32 speech for `text`, peak-normalised; the same inputs give the same samples."""
        clean = prepare_text(text)
        if not self.has_voice(voice):
            raise UnknownVoice(f"{self.name} has no voice {voice!r}; available: {', '.join(self.voices())}")
        try:
            pcm, sr = self._render(clean, voice)
            audio = to_pipeline_format(pcm, sr)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise TtsError(self.name, voice, text, str(exc)) from exc
        if audio.size == 0:
            raise TtsError(self.name, voice, text, "engine returned no audio")
        if not np.all(np.isfinite(audio)):
            raise TtsError(self.name, voice, text, "engine returned NaN or inf samples")
        peak = float(np.max(np.abs(audio)))
        if peak < _SILENCE_PEAK:
            raise TtsError(self.name, voice, text, f"engine returned silence (peak {peak:.1e})")
        return (audio * np.float32(PEAK_LEVEL / peak)).astype(np.float32)
