"""espeak-ng: formant synthesis, the fastest engine here and the default (Debian package `espeak-ng`).

Voices are espeak-ng languages (`en-us`, `en-gb`, `en-gb-scotland`, ...) optionally with a variant
(`en-us+f3`, `en-gb+klatt`). Variants and regional accents cost intelligibility (DESIGN §4: whisper tiny.en
WER 0.08 for plain `en-us`, 0.14-0.75 for variants), so `default_voices` stays small; every language+variant
combination is still accepted by name. mbrola voices are left out: they need the `mbrola` binary and voices
from Debian contrib.

Text goes in on stdin, WAV (22.05 kHz) comes back on stdout. Output is deterministic: the engine has no
randomness.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from stages.audio_io import decode_audio
from stages.tts.base import TtsBackend, run_engine

#: Curated voices: three timbres/accents that whisper tiny.en understands best (benchmarks/tts.py, 10 sentences:
#: en-us 0.18, en-us+m3 0.18, en-gb-x-rp 0.20 WER; plain en-gb 0.29, en-gb-scotland 0.36, en-us+f2 0.37, en-029 0.44).
DEFAULT_VOICES: tuple[str, ...] = ("en-us", "en-us+m3", "en-gb-x-rp")


class EspeakBackend(TtsBackend):
    name = "espeak-ng"
    install_hint = "apt-get install espeak-ng"

    def __init__(self, binary: str = "espeak-ng", timeout_s: float = 60.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self._languages: tuple[str, ...] | None = None
        self._variants: frozenset[str] | None = None

    def problems(self) -> tuple[str, ...]:
        return () if shutil.which(self.binary) else (f"binary {self.binary!r} not found on PATH",)

    def _run(self, *args: str, stdin: bytes | None = None) -> bytes:
        return run_engine([self.binary, *args], stdin=stdin, timeout_s=self.timeout_s)

    def voices(self) -> tuple[str, ...]:
        """espeak-ng languages (variants are accepted by `has_voice` but not enumerated: ~80 per language)."""
        if self._languages is None:
            self.require()
            rows = self._run("--voices").decode("utf-8", "replace").splitlines()[1:]
            # Columns: Pty Language Age/Gender VoiceName File [Other languages]; mbrola voices live in mb/.
            table = [row.split() for row in rows]
            langs = {cols[1] for cols in table if len(cols) >= 5 and not cols[4].startswith("mb/")}
            self._languages = tuple(sorted(langs))
        return self._languages

    def variants(self) -> frozenset[str]:
        """Variant names (the files under `<espeak-ng-data>/voices/!v`; some contain spaces, so no parsing)."""
        if self._variants is None:
            self.require()
            version = self._run("--version").decode("utf-8", "replace")
            data_dir = Path(version.split("Data at:", 1)[1].strip()) if "Data at:" in version else None
            variant_dir = data_dir / "voices" / "!v" if data_dir else None
            names = os.listdir(variant_dir) if variant_dir and variant_dir.is_dir() else []
            self._variants = frozenset(names)
        return self._variants

    def default_voices(self) -> tuple[str, ...]:
        return tuple(v for v in DEFAULT_VOICES if self.has_voice(v))

    def has_voice(self, voice: str) -> bool:
        language, plus, variant = voice.partition("+")
        return language in self.voices() and (not plus or variant in self.variants())

    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        # --stdin reads the whole input as one text (without it espeak-ng reads line by line).
        wav = self._run("-v", voice, "--stdin", "--stdout", stdin=text.encode("utf-8"))
        return decode_audio(wav)
