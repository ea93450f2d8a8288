"""Festival: the Edinburgh engine, driven through its `text2wave` script (Debian `festival` plus voice packages
`festvox-kallpc16k` -> `kal`, `festvox-kdlpc16k` -> `ked`).

Voices are the directories under `<voices_dir>/<language>/`; a `_diphone` suffix is dropped from the name
(`kal_diphone` -> `kal`) and the voice is selected with `-eval (voice_<dir>)`. Only names found on disk are
ever put into that Scheme expression, and the text goes in through a temporary file, never into Scheme. An
unknown voice makes festival print an error yet exit 0 with an empty file, hence the name check up front.

Festival reads ASCII, so text is folded to ASCII. No randomness: the same text gives the same samples.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from stages.audio_io import decode_audio
from stages.tts.base import TtsBackend, ascii_fold, run_engine

#: Curated voices (benchmarks/tts.py, whisper tiny.en WER: kal 0.10, ked 0.12).
DEFAULT_VOICES: tuple[str, ...] = ("kal", "ked")
_SUFFIX = "_diphone"


class FestivalBackend(TtsBackend):
    name = "festival"
    install_hint = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k"

    def __init__(
        self, binary: str = "text2wave", voices_dir: str | Path = "/usr/share/festival/voices", timeout_s: float = 120.0
    ) -> None:
        self.binary = binary
        self.voices_dir = Path(voices_dir)
        self.timeout_s = timeout_s

    def _voice_dirs(self) -> dict[str, str]:
        """Voice name -> festival voice directory name (what `voice_<dir>` selects)."""
        if not self.voices_dir.is_dir():
            return {}
        languages = [lang for lang in self.voices_dir.iterdir() if lang.is_dir()]
        dirs = sorted(d.name for lang in languages for d in lang.iterdir() if d.is_dir())
        return {d.removesuffix(_SUFFIX): d for d in dirs}

    def problems(self) -> tuple[str, ...]:
        found = []
        if not shutil.which(self.binary):
            found.append(f"binary {self.binary!r} not found on PATH")
        if not self._voice_dirs():
            found.append(f"no festival voices under {self.voices_dir}")
        return tuple(found)

    def voices(self) -> tuple[str, ...]:
        return tuple(self._voice_dirs())

    def default_voices(self) -> tuple[str, ...]:
        return tuple(v for v in DEFAULT_VOICES if self.has_voice(v))

    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        select = f"(voice_{self._voice_dirs()[voice]})"
        with tempfile.TemporaryDirectory(prefix="ttt-festival-") as tmp:
            src, out = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
            src.write_text(ascii_fold(text) + "\n", encoding="ascii")
            run_engine([self.binary, "-eval", select, "-o", str(out), str(src)], timeout_s=self.timeout_s)
            data = out.read_bytes()
        if not data:
            raise RuntimeError("text2wave wrote no audio (voice failed to load?)")
        return decode_audio(data)
