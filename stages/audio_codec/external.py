"""The `full`-profile codec: GLM-4-Voice's speech tokenizer and its CosyVoice flow + HiFT decoder from local dirs.

Nothing is downloaded. `load_glm4voice` checks both directories for the files the upstream loaders read, then
imports the upstream code (a checkout of THUDM/GLM-4-Voice on `PYTHONPATH`: `speech_tokenizer/` for the
12.5 Hz / 16384-code whisper-VQ tokenizer and `flow_inference.py` for the decoder, plus their requirements), and
raises `ExternalCodecUnavailable` naming the first thing that is missing. The weights have never been present
on the machines this project was built on, so the glue in `load_glm4voice` is exercised against fake upstream
modules only; `ExternalCodec` holds everything that does not depend on upstream code (batching, dtypes,
resampling to 16 kHz) and is tested directly.

`ExternalCodec` exposes the same `encode` / `encode_batch` / `decode` contract as `AudioCodec`, so the tokenize
stage, evaluation and the streaming detokenizer take either.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Protocol

import numpy as np

#: Files the upstream loaders open (WhisperVQEncoder.from_pretrained + WhisperFeatureExtractor; AudioDecoder).
GLM4_TOKENIZER_FILES = ("config.json", "preprocessor_config.json", "model.safetensors")
GLM4_DECODER_FILES = ("config.yaml", "flow.pt", "hift.pt")
GLM4_TOKEN_RATE_HZ = 12.5
GLM4_CODEBOOK_SIZE = 16384
GLM4_DECODER_SAMPLE_RATE = 22050
SAMPLE_RATE = 16000


class ExternalCodecUnavailable(FileNotFoundError):
    """A `full`-profile codec cannot be built: a directory, file or upstream module is missing."""


class SpeechCodec(Protocol):
    """What the pipeline needs from any audio tokenizer (the embedded `AudioCodec` or an external one)."""

    @property
    def token_rate_hz(self) -> float: ...
    @property
    def codebook_size(self) -> int: ...
    def encode(self, pcm: np.ndarray) -> np.ndarray: ...
    def encode_batch(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]: ...
    def decode(self, codes: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ExternalCodec:
    """Adapter around an external tokenizer/decoder pair given as two callables.

    `encode_fn(clips_16k) -> list of code sequences` (one call per batch); `decode_fn(codes) -> PCM at
    `decoder_sample_rate``; decoded audio is resampled to 16 kHz (polyphase) and clipped to [-1, 1].
    """

    encode_fn: Callable[[list[np.ndarray]], list[Sequence[int]]]
    decode_fn: Callable[[np.ndarray], np.ndarray]
    token_rate_hz: float
    codebook_size: int
    decoder_sample_rate: int

    def encode(self, pcm: np.ndarray) -> np.ndarray:
        """int64 codes of one 16 kHz mono float clip."""
        return self.encode_batch([pcm])[0]

    def encode_batch(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """int64 codes per clip, checked against the codebook size."""
        pcms = [np.asarray(c, dtype=np.float32) for c in clips]
        codes = [np.asarray(c, dtype=np.int64) for c in self.encode_fn(pcms)]
        if len(codes) != len(pcms):
            raise RuntimeError(f"external tokenizer returned {len(codes)} code sequences for {len(pcms)} clips")
        for c in codes:
            if c.size and (c.min() < 0 or c.max() >= self.codebook_size):
                raise RuntimeError(f"external tokenizer produced codes outside [0, {self.codebook_size})")
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 16 kHz PCM for `codes`."""
        from scipy.signal import resample_poly

        c = np.asarray(codes, dtype=np.int64)
        if c.size == 0:
            return np.zeros(0, dtype=np.float32)
        pcm = np.asarray(self.decode_fn(c), dtype=np.float64).reshape(-1)
        if self.decoder_sample_rate != SAMPLE_RATE:
            g = gcd(SAMPLE_RATE, self.decoder_sample_rate)
            pcm = resample_poly(pcm, SAMPLE_RATE // g, self.decoder_sample_rate // g)
        return np.clip(pcm, -1.0, 1.0).astype(np.float32)


def check_model_dir(path: str | Path, required: Sequence[str], what: str) -> Path:
    """`path` as a Path if it is a directory holding every file in `required`; else a message naming the gap."""
    d = Path(path)
    if not d.is_dir():
        raise ExternalCodecUnavailable(f"{what}: directory {d} does not exist")
    missing = [name for name in required if not (d / name).is_file()]
    if missing:
        raise ExternalCodecUnavailable(f"{what}: {d} lacks {', '.join(missing)} (needs {', '.join(required)})")
    return d


def _import(module: str, what: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExternalCodecUnavailable(
            f"{what}: cannot import '{module}' ({exc}); put a checkout of THUDM/GLM-4-Voice (with its "
            "third_party code and requirements) on PYTHONPATH"
        ) from exc


def load_glm4voice(tokenizer_dir: str | Path, decoder_dir: str | Path, device: str = "cpu") -> ExternalCodec:
    """GLM-4-Voice tokenizer + CosyVoice decoder from local directories, behind the `SpeechCodec` contract."""
    tok_dir = check_model_dir(tokenizer_dir, GLM4_TOKENIZER_FILES, "GLM-4-Voice tokenizer")
    dec_dir = check_model_dir(decoder_dir, GLM4_DECODER_FILES, "GLM-4-Voice decoder")
    modeling = _import("speech_tokenizer.modeling_whisper", "GLM-4-Voice tokenizer")
    utils = _import("speech_tokenizer.utils", "GLM-4-Voice tokenizer")
    flow = _import("flow_inference", "GLM-4-Voice decoder")
    import torch
    from transformers import WhisperFeatureExtractor

    encoder = modeling.WhisperVQEncoder.from_pretrained(str(tok_dir)).eval().to(device)
    features = WhisperFeatureExtractor.from_pretrained(str(tok_dir))
    decoder = flow.AudioDecoder(
        config_path=str(dec_dir / "config.yaml"), flow_ckpt_path=str(dec_dir / "flow.pt"),
        hift_ckpt_path=str(dec_dir / "hift.pt"), device=device,
    )

    def encode_fn(clips: list[np.ndarray]) -> list[Sequence[int]]:
        utts = [(torch.from_numpy(c)[None], SAMPLE_RATE) for c in clips]
        return utils.extract_speech_token(encoder, features, utts)

    def decode_fn(codes: np.ndarray) -> np.ndarray:
        speech = decoder.offline_inference(torch.from_numpy(codes)[None].to(device))
        return speech.detach().cpu().numpy()

    return ExternalCodec(encode_fn, decode_fn, GLM4_TOKEN_RATE_HZ, GLM4_CODEBOOK_SIZE, GLM4_DECODER_SAMPLE_RATE)
