"""CosyVoice2 (FunAudioLLM/CosyVoice2-0.5B) from a local model directory, for the `full` profile.

No weights ship with this project and nothing may download them, so the backend is an adapter with two
halves:

* the part that always runs: `problems()` checks the model directory layout (`REQUIRED_FILES`) and the
  speaker prompts, and `require()` fails with the list of missing files before anything heavy is imported;
* `CosyVoiceEngine`, the three calls we need from upstream's `cosyvoice.cli.cosyvoice.CosyVoice2`, wrapped by
  `OfficialEngine`. Upstream is not on PyPI: clone github.com/FunAudioLLM/CosyVoice, install its requirements
  and put the clone and its `third_party/Matcha-TTS` on `PYTHONPATH`. Tests inject a fake engine through
  `engine_factory`; the official wrapper follows upstream's current API (prompts are wav *paths*) and has not
  been run against real weights here.

Voices are zero-shot speakers: each `<name>.wav` in `prompts_dir` (default `<model_dir>/prompts`) with its
transcript in `<name>.txt` is voice `cosyvoice2:<name>`. The prompt is registered once per process
(`add_zero_shot_spk`), then reused for every utterance.

Determinism: the LLM samples speech tokens, so torch's global RNG is seeded from `(seed, voice, text)` before
each utterance; the same inputs give the same samples on the same hardware and library versions.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from stages.tts.base import TtsBackend, stable_seed

#: Files upstream's `CosyVoice2(model_dir)` opens (cosyvoice/cli/cosyvoice.py and frontend.py).
REQUIRED_FILES: tuple[str, ...] = (
    "cosyvoice2.yaml",
    "llm.pt",
    "flow.pt",
    "hift.pt",
    "campplus.onnx",
    "speech_tokenizer_v2.onnx",
    "CosyVoice-BlankEN/config.json",
)


class CosyVoiceEngine(Protocol):
    """What the backend needs from a loaded CosyVoice2 model."""

    sample_rate: int

    def add_speaker(self, name: str, prompt_text: str, prompt_wav: Path) -> None: ...

    def synthesize(self, text: str, speaker: str, seed: int) -> np.ndarray: ...


class OfficialEngine:
    """`CosyVoiceEngine` over upstream's `CosyVoice2` class (imported lazily: torch + CosyVoice take seconds)."""

    def __init__(self, model_dir: Path) -> None:
        from cosyvoice.cli.cosyvoice import CosyVoice2

        self._model = CosyVoice2(str(model_dir))
        self.sample_rate = int(self._model.sample_rate)

    def add_speaker(self, name: str, prompt_text: str, prompt_wav: Path) -> None:
        if not self._model.add_zero_shot_spk(prompt_text, str(prompt_wav), name):
            raise RuntimeError(f"CosyVoice2 refused speaker prompt {prompt_wav}")

    def synthesize(self, text: str, speaker: str, seed: int) -> np.ndarray:
        import torch

        torch.manual_seed(seed)
        # Empty prompt text/wav: the registered speaker's prompt (zero_shot_spk_id) is used instead.
        outputs = self._model.inference_zero_shot(text, "", "", zero_shot_spk_id=speaker, stream=False)
        return np.concatenate([out["tts_speech"].detach().cpu().numpy().reshape(-1) for out in outputs])


class CosyVoice2Backend(TtsBackend):
    name = "cosyvoice2"
    install_hint = (
        "a CosyVoice2-0.5B model directory (model_dir=...) with speaker prompts <name>.wav + <name>.txt, and "
        "github.com/FunAudioLLM/CosyVoice (+ third_party/Matcha-TTS) on PYTHONPATH with its requirements"
    )

    def __init__(
        self,
        model_dir: str | Path | None = None,
        prompts_dir: str | Path | None = None,
        seed: int = 0,
        engine_factory: Callable[[Path], CosyVoiceEngine] | None = None,
    ) -> None:
        # An empty string counts as "not given": that is how an unset params field reaches us.
        self.model_dir = Path(model_dir) if model_dir else None
        if prompts_dir:
            self.prompts_dir: Path | None = Path(prompts_dir)
        else:
            self.prompts_dir = self.model_dir / "prompts" if self.model_dir is not None else None
        self.seed = seed
        self._engine_factory = engine_factory
        self._engine: CosyVoiceEngine | None = None
        self._registered: set[str] = set()

    def missing_files(self) -> tuple[str, ...]:
        """Required model files absent from `model_dir` (all of them when no directory was given)."""
        if self.model_dir is None:
            return REQUIRED_FILES
        return tuple(f for f in REQUIRED_FILES if not (self.model_dir / f).is_file())

    def problems(self) -> tuple[str, ...]:
        found = []
        if self.model_dir is None:
            found.append("no model_dir given")
        elif not self.model_dir.is_dir():
            found.append(f"model directory {self.model_dir} does not exist")
        else:
            missing = self.missing_files()
            if missing:
                found.append(f"model directory {self.model_dir} lacks {', '.join(missing)}")
        if self.prompts_dir is not None and not self.voices():
            found.append(f"no speaker prompts (<name>.wav with <name>.txt) in {self.prompts_dir}")
        if self._engine_factory is None and importlib.util.find_spec("cosyvoice") is None:
            found.append("python package 'cosyvoice' (the upstream repository) is not importable")
        return tuple(found)

    def voices(self) -> tuple[str, ...]:
        if self.prompts_dir is None or not self.prompts_dir.is_dir():
            return ()
        return tuple(sorted(p.stem for p in self.prompts_dir.glob("*.wav") if p.with_suffix(".txt").is_file()))

    def default_voices(self) -> tuple[str, ...]:
        return self.voices()

    def _speaker(self, voice: str) -> CosyVoiceEngine:
        """The loaded engine with `voice` registered (model loaded and prompt encoded once per process)."""
        if self._engine is None:
            self.require()
            assert self.model_dir is not None and self.prompts_dir is not None  # require() guarantees both
            factory = self._engine_factory or OfficialEngine
            self._engine = factory(self.model_dir)
        if voice not in self._registered:
            wav = self.prompts_dir / f"{voice}.wav"  # type: ignore[operator]
            self._engine.add_speaker(voice, wav.with_suffix(".txt").read_text(encoding="utf-8").strip(), wav)
            self._registered.add(voice)
        return self._engine

    def _render(self, text: str, voice: str) -> tuple[np.ndarray, int]:
        engine = self._speaker(voice)
        pcm = engine.synthesize(text, voice, stable_seed(str(self.seed), voice, text))
        return pcm, engine.sample_rate
