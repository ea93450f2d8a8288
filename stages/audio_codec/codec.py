"""The embedded audio codec: k-means codes over stacked 80-bin log-mel frames, and their inverse.

Encoding: 16 kHz PCM -> log-mel frames at `frame_rate_hz` -> `stack = frame_rate_hz / token_rate_hz` consecutive
frames concatenated -> index of the nearest of `codebook_size` centroids. A clip of `L` samples gives exactly
`ceil(L / samples_per_token)` codes. Decoding: codes -> log-mel (centroid lookup, or the learned residual decoder
of `decoder.py`) -> light 3-tap smoothing across frames -> NNLS mel inversion -> fast Griffin-Lim; `N` codes
decode to exactly `N * samples_per_token` samples, so token spans can be decoded and streamed one at a time.

Who calls what: the `tokenizers` stage runs `AudioCodec.fit(...).save(dir)`, the `tokenize` stage
`AudioCodec.load(dir).encode_batch(clips)`, evaluation and the streaming detokenizer `decode(span)`.
Round-trip quality and speed per setting are measured by `benchmarks/audio_codec.py`.

Files in a codec directory: `codec_config.json` (format tag + the resolved `CodecConfig`) and
`codec.safetensors` (centroids + decoder weights). No pickle anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stages.atomic import atomic_write
from stages.audio_codec.decoder import TokenMelDecoder, fit_decoder
from stages.audio_codec.features import MelSpectrogram
from stages.audio_codec.kmeans import fit_kmeans, nearest
from stages.config import from_mapping

CONFIG_FILE = "codec_config.json"
WEIGHTS_FILE = "codec.safetensors"
FORMAT = "ttt-audio-codec/1"
#: Padded samples per analysis batch in `encode_batch` (~60 s of audio): bounds memory, amortises overhead.
BATCH_SAMPLES = 60 * 16000


@dataclass(frozen=True)
class CodecConfig:
    """Everything that defines a codec; saved beside its weights and loaded strictly.

    The defaults are the choice from `benchmarks/audio_codec.py` on flite voices (500 fit / 48 held-out clips):
    25 Hz, 4096 codes, learned decoder, smoothing 0.15 -> whisper-tiny judge WER 0.184 (originals 0.082; centroid
    decoder 0.200; 25 Hz/1024 codes 0.31; 12.5 Hz 0.32). Width 192 / 1000 steps gave 0.171 for ~30 % more fit time.
    """

    token_rate_hz: float = 25.0
    """Audio tokens per second. Must divide `frame_rate_hz`; 25 Hz gives 26 tokens ~ 1 s per interleaved span."""
    codebook_size: int = 4096
    """Number of codes (k in k-means); the vocabulary's audio-code range has exactly this size."""
    frame_rate_hz: float = 50.0
    """Log-mel analysis frame rate; `frame_rate_hz / token_rate_hz` frames are stacked into one token."""
    sample_rate: int = 16000
    """Input/output PCM rate (the pipeline's audio is 16 kHz mono)."""
    n_mels: int = 80
    """Mel bins per frame."""
    n_fft: int = 1024
    """STFT size for analysis and Griffin-Lim (64 ms at 16 kHz)."""
    kmeans_iters: int = 20
    """Maximum Lloyd passes of the codebook fit (it stops early once assignments are stable)."""
    max_fit_tokens: int = 100_000
    """Fit reads clips until it has this many token vectors, so fit memory is flat however large the corpus."""
    decoder: Literal["learned", "centroid"] = "learned"
    """`learned`: conv residual decoder over code context (better); `centroid`: plain codebook lookup."""
    decoder_width: int = 128
    """Channels of the learned decoder."""
    decoder_steps: int = 600
    """Optimiser steps of the learned decoder fit (batch 16 x 64 tokens)."""
    smoothing: float = 0.15
    """Weight `s` of each neighbour in the `[s, 1 - 2s, s]` smoothing of decoded log-mel frames (0 = off)."""
    griffin_lim_iters: int = 32
    """Griffin-Lim iterations per decode."""

    def __post_init__(self) -> None:
        if self.token_rate_hz <= 0 or self.frame_rate_hz <= 0:
            raise ValueError("token_rate_hz and frame_rate_hz must be positive")
        if not float(self.frame_rate_hz / self.token_rate_hz).is_integer():
            raise ValueError(f"frame_rate_hz {self.frame_rate_hz} is not a multiple of token_rate_hz {self.token_rate_hz}")
        if not float(self.sample_rate / self.frame_rate_hz).is_integer():
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of frame_rate_hz {self.frame_rate_hz}")
        if self.n_fft < 2 * self.hop_length:
            raise ValueError(f"n_fft {self.n_fft} must be at least twice the hop {self.hop_length} for Griffin-Lim")
        if self.codebook_size < 2:
            raise ValueError("codebook_size must be at least 2")
        if not 0.0 <= self.smoothing < 1.0 / 3.0:
            raise ValueError("smoothing must be in [0, 1/3) so the centre weight stays the largest")
        for name in ("n_mels", "kmeans_iters", "max_fit_tokens", "decoder_width", "griffin_lim_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.decoder_steps < 0:
            raise ValueError("decoder_steps must be non-negative")

    @property
    def hop_length(self) -> int:
        """Samples between analysis frames."""
        return int(self.sample_rate / self.frame_rate_hz)

    @property
    def stack(self) -> int:
        """Analysis frames per token."""
        return int(self.frame_rate_hz / self.token_rate_hz)

    @property
    def samples_per_token(self) -> int:
        """PCM samples one token covers (and decodes to)."""
        return self.hop_length * self.stack

    def n_tokens(self, n_samples: int) -> int:
        """Codes for a clip of `n_samples` samples (a partial last token is zero-padded)."""
        return math.ceil(n_samples / self.samples_per_token)


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread for the duration (then restore the previous count).

    Used for `fit`: float reductions split across threads can round differently on machines with different core
    counts, and the fit must give the same codec for a seed everywhere (DVC caches it). Its many small
    decoder-training ops are also faster without OpenMP barriers on a busy 2-core machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_float_pcm(pcm: np.ndarray) -> np.ndarray:
    """1-D float PCM in [-1, 1]; integer PCM (e.g. int16 from a WAV) is scaled by its type's range."""
    x = np.asarray(pcm)
    if x.ndim != 1:
        raise ValueError(f"expected mono 1-D PCM, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    return x.astype(np.float32, copy=False)


def token_vectors(mel: MelSpectrogram, config: CodecConfig, clips: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """Stacked float64 log-mel vectors `(n_tokens, stack * n_mels)` per clip, analysed as one padded batch.

    Zero padding after a clip never reaches its frames (see `features.py`), so batching changes nothing.
    """
    lengths = [len(c) for c in clips]
    width = max(lengths, default=0)
    batch = torch.zeros(len(clips), width, dtype=torch.float64)
    for i, c in enumerate(clips):
        batch[i, : len(c)] = torch.from_numpy(c)
    log_mel_BTM = mel.log_mel(batch, config.n_tokens(width) * config.stack)
    d = config.stack * config.n_mels
    return [log_mel_BTM[i, : config.n_tokens(n) * config.stack].reshape(-1, d) for i, n in enumerate(lengths)]


class AudioCodec:
    """A fitted codec: `encode`/`encode_batch` PCM to int64 codes, `decode` codes to float32 PCM."""

    def __init__(self, config: CodecConfig, centroids_KD: torch.Tensor, decoder: TokenMelDecoder | None = None):
        expected = (config.codebook_size, config.stack * config.n_mels)
        if tuple(centroids_KD.shape) != expected:
            raise ValueError(f"centroids have shape {tuple(centroids_KD.shape)}, config implies {expected}")
        if config.decoder == "learned" and decoder is None:
            raise ValueError("config.decoder is 'learned' but no decoder was given")
        if config.decoder == "centroid" and decoder is not None:
            raise ValueError("config.decoder is 'centroid' but a learned decoder was given")
        self.config = config
        self.centroids_KD = centroids_KD.to(torch.float32)
        self.decoder = decoder
        self._mel = MelSpectrogram(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)

    @property
    def token_rate_hz(self) -> float:
        """Codes per second of audio."""
        return self.config.token_rate_hz

    @property
    def codebook_size(self) -> int:
        """Number of distinct codes."""
        return self.config.codebook_size

    def n_tokens(self, n_samples: int) -> int:
        """Codes produced for a clip of `n_samples` samples (a partial last token is zero-padded)."""
        return self.config.n_tokens(n_samples)

    def encode(self, pcm: np.ndarray) -> np.ndarray:
        """int64 codes of one 16 kHz mono clip (float in [-1, 1] or integer PCM)."""
        return self.encode_batch([pcm])[0]

    def encode_batch(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Codes of many clips, in order; identical to encoding each clip alone.

        Clips are sorted by length and analysed in padded groups of ~60 s (little padding, large FFT/BLAS calls
        that use every core torch is allowed); each clip's frames depend only on its own samples.
        """
        pcms = [_as_float_pcm(c) for c in clips]
        order = sorted(range(len(pcms)), key=lambda i: len(pcms[i]))
        out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(pcms)
        group: list[int] = []
        for pos, i in enumerate(order):
            group.append(i)
            last = pos == len(order) - 1
            if last or (len(group) + 1) * len(pcms[order[pos + 1]]) > BATCH_SAMPLES:
                vectors = token_vectors(self._mel, self.config, [pcms[j] for j in group])
                labels, _ = nearest(torch.cat(vectors), self.centroids_KD)
                for j, part in zip(group, labels.split([v.shape[0] for v in vectors])):
                    out[j] = part.numpy().astype(np.int64)
                group = []
        return out

    # ---- synthesis ------------------------------------------------------------------------------------------

    def decode_log_mel(self, codes: np.ndarray) -> torch.Tensor:
        """Smoothed log-mel frames `(len(codes) * stack, n_mels)` for `codes`."""
        cfg = self.config
        c = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if c.ndim != 1:
            raise ValueError(f"expected a 1-D code array, got shape {tuple(c.shape)}")
        if c.numel() == 0:
            return torch.zeros(0, cfg.n_mels)
        if int(c.min()) < 0 or int(c.max()) >= cfg.codebook_size:
            raise ValueError(f"codes must lie in [0, {cfg.codebook_size}), got [{int(c.min())}, {int(c.max())}]")
        if self.decoder is not None:
            with torch.no_grad():
                frames_TM = self.decoder(c[None])[0]
        else:
            frames_TM = self.centroids_KD[c].reshape(-1, cfg.n_mels)
        s = cfg.smoothing
        if s > 0 and frames_TM.shape[0] > 1:
            padded = torch.cat([frames_TM[:1], frames_TM, frames_TM[-1:]])
            frames_TM = s * padded[:-2] + (1 - 2 * s) * padded[1:-1] + s * padded[2:]
        return frames_TM

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 PCM of exactly `len(codes) * samples_per_token` samples (deterministic)."""
        frames_TM = self.decode_log_mel(codes)
        if frames_TM.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        pcm = self._mel.griffin_lim(self._mel.magnitude(frames_TM.numpy()), self.config.griffin_lim_iters)
        return np.clip(pcm, -1.0, 1.0)

    # ---- fit / save / load ----------------------------------------------------------------------------------

    @classmethod
    def fit(cls, clips: Iterable[np.ndarray], config: CodecConfig, seed: int) -> AudioCodec:
        """Fit the codebook (and the learned decoder) on 16 kHz mono clips; deterministic for a seed.

        Reads clips only until `config.max_fit_tokens` token vectors are collected; runs single-threaded so the
        result is the same on every machine.
        """
        mel = MelSpectrogram(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)
        vectors: list[torch.Tensor] = []
        total = 0
        for clip in clips:
            v = token_vectors(mel, config, [_as_float_pcm(clip)])[0].to(torch.float32)
            vectors.append(v[: config.max_fit_tokens - total])
            total += vectors[-1].shape[0]
            if total >= config.max_fit_tokens:
                break
        x_ND = torch.cat(vectors) if vectors else torch.zeros(0, config.stack * config.n_mels)
        decoder = None
        with _single_threaded():
            centroids = fit_kmeans(x_ND, config.codebook_size, config.kmeans_iters, seed)
            if config.decoder == "learned":
                codes_N, _ = nearest(x_ND, centroids)
                decoder = fit_decoder(
                    centroids, config.stack, config.decoder_width, codes_N,
                    x_ND.reshape(-1, config.n_mels), config.decoder_steps, seed,
                )
        return cls(config, centroids, decoder)

    def save(self, directory: str | Path) -> Path:
        """Write `codec.safetensors` then `codec_config.json` into `directory` (each atomically)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {"centroids": self.centroids_KD.contiguous()}
        if self.decoder is not None:
            tensors |= {
                f"decoder.{k}": v.contiguous() for k, v in self.decoder.state_dict().items() if k != "centroids"
            }
        config = json.dumps({"format": FORMAT, "config": dataclasses.asdict(self.config)}, indent=2) + "\n"
        atomic_write(d / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
        atomic_write(d / CONFIG_FILE, lambda tmp: tmp.write_text(config))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> AudioCodec:
        """Load a codec written by `save` (strict: unknown config keys or missing weights are errors)."""
        d = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: not an audio codec directory (missing {name})")
        meta = json.loads((d / CONFIG_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{d / CONFIG_FILE}: format {meta.get('format')!r}, expected {FORMAT!r}")
        config = from_mapping(CodecConfig, meta["config"], str(d / CONFIG_FILE))
        tensors = load_file(str(d / WEIGHTS_FILE))
        centroids = tensors.pop("centroids")
        decoder = None
        if config.decoder == "learned":
            decoder = TokenMelDecoder(centroids, config.stack, config.n_mels, config.decoder_width)
            state = {k.removeprefix("decoder."): v for k, v in tensors.items()} | {"centroids": centroids}
            decoder.load_state_dict(state, strict=True)
            decoder.eval()
        return cls(config, centroids, decoder)
