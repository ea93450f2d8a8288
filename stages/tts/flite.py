"""flite: CMU's small diphone/cluster-unit engine (Debian package `flite`, voices compiled into the binary).

Voices come from `flite -lv`: `kal` (8 kHz diphone), `kal16`, `awb`, `rms`, `slt` (16 kHz). `awb_time` is a
limited-domain voice that can only say clock times, so it is not offered. flite silently falls back to `kal`
for an unknown voice name, which is why the base class checks the name first.

flite reads only ASCII English, so text is folded to ASCII; it goes in through a temporary file. No
randomness: the same text gives the same samples.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from stages.audio_io import decode_audio
from stages.tts.base import TtsBackend, ascii_fold, run_engine

#: Limited-domain voices that cannot read arbitrary text.
_LIMITED_DOMAIN = frozenset({"awb_time"})
#: Curated voices, most intelligible first (benchmarks/tts.py, whisper tiny.en WER: slt 0.01, awb 0.02, rms 0.02,
#: kal16 0.15; `kal` is kal16's voice at 8 kHz). kal16 stays for its speed (3.5x less CPU) and its distinct voice.
DEFAULT_VOICES: tuple[str, ...] = ("slt", "awb", "rms", "kal16")


class FliteBackend(TtsBackend):
    name = "flite"
    install_hint = "apt-get install flite"

    def __init__(self, binary: str = "flite", timeout_s: float = 60.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self._voices: tuple[str, ...] | None = None

    def problems(self) -> tuple[str, ...]:
        return () if shutil.which(self.binary) else (f"binary {self.binary!r} not found on PATH",)

    def voices(self) -> tuple[str, ...]:
        if self._voices is None:
            self.require()
            listing = run_engine([self.binary, "-lv"], timeout_s=self.timeout_s).decode("utf-8", "replace")
            names = listing.split(":", 1)[1].split() if ":" in listing else []
            self._voices = tuple(n for n in names if n not in _LIMITED_DOMAIN)
        return self._voices

    def default_voices(self) -> tuple[str, ...]:
        return tuple(v for v in DEFAULT_VOICES if self.has_voice(v))

    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory(prefix="ttt-flite-") as tmp:
            src, out = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
            src.write_text(ascii_fold(text) + "\n", encoding="ascii")
            run_engine([self.binary, "-voice", voice, "-f", str(src), "-o", str(out)], timeout_s=self.timeout_s)
            return decode_audio(out.read_bytes())
