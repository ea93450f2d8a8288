"""Log-mel analysis and Griffin-Lim synthesis: the signal-processing ends of the embedded audio codec.

Why not `librosa.feature`: it JIT-compiles numba kernels on first use (~33 s per fresh environment, DESIGN §4).
Analysis is batched torch in float64 (the tokenize stage encodes many clips at once); synthesis is numpy/scipy
in float32 (see `griffin_lim`). Only the mel filterbank comes from librosa (`librosa.filters.mel`, plain
numpy), so the features match librosa's Slaney-normalised mel scale.

Framing convention (shared by analysis and synthesis): a clip of `n_frames * hop` samples has `n_frames` frames,
frame `t` centred on sample `t * hop` (zero padding at both ends, so every frame depends only on the clip's own
samples and on nothing a batch adds after it). Synthesis of `n_frames` frames returns exactly `n_frames * hop`
samples, so a token span always decodes to `len(span) * samples_per_token` samples.
"""

from __future__ import annotations

import numpy as np
import torch

#: Mel magnitude floor before the log: 65-75 dB below the loudest mel bin of a flite sentence (about a fifth of
#: all mel cells sit on it). Lower floors spend codebook capacity on the texture of near-silence, which neither
#: the judge nor a listener hears; resynthesis from unquantised mels kept the judge WER of the originals.
LOG_MEL_FLOOR = 1e-3


class MelSpectrogram:
    """STFT magnitude -> Slaney mel -> natural log, and the inverse by NNLS + fast Griffin-Lim."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> None:
        import librosa.filters  # plain numpy; `librosa.feature` (numba) is never imported

        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window = torch.hann_window(n_fft, dtype=torch.float64)
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmax=sample_rate / 2)
        self.filterbank_MF = torch.from_numpy(fb).to(torch.float64)
        self._window32 = self.window.numpy().astype(np.float32)
        self._filterbank32_MF = fb.astype(np.float32)
        self._pinv32_MF = np.linalg.pinv(fb).T.astype(np.float32)

    def log_mel(self, pcm_BL: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Log-mel frames `(B, n_frames, n_mels)` of a zero-padded batch `(B, L)` in float64.

        float64 keeps batched and single-clip encoding bit-identical in practice: rounding differences between
        FFT/BLAS code paths for different batch shapes are far below any nearest-centroid margin.
        """
        need = n_frames * self.hop_length
        x = pcm_BL.to(torch.float64)
        if x.shape[-1] < need:
            x = torch.nn.functional.pad(x, (0, need - x.shape[-1]))
        spec = torch.stft(
            x[..., :need], self.n_fft, self.hop_length, window=self.window, center=True,
            pad_mode="constant", return_complex=True,
        )
        mel_BMT = self.filterbank_MF @ spec.abs()[..., :n_frames]
        return torch.log(mel_BMT.clamp_min(LOG_MEL_FLOOR)).transpose(-1, -2)

    def magnitude(self, log_mel_TM: np.ndarray, nnls_iters: int = 20) -> np.ndarray:
        """Non-negative linear magnitude `(T, F)` whose mel projection best matches `exp(log_mel)`.

        Multiplicative NNLS updates (Lee & Seung) from the clipped pseudo-inverse: a few cheap matmuls instead of
        librosa's per-frame L-BFGS, and no negative energy for Griffin-Lim to chase.
        """
        mel_TM = np.exp(np.asarray(log_mel_TM, dtype=np.float32))
        fb_MF = self._filterbank32_MF
        mag_TF = np.maximum(mel_TM @ self._pinv32_MF, 1e-6)
        numer_TF = mel_TM @ fb_MF
        for _ in range(nnls_iters):
            mag_TF *= numer_TF / ((mag_TF @ fb_MF.T) @ fb_MF + 1e-10)
        return mag_TF

    def _overlap_add(self, frames_TN: np.ndarray) -> np.ndarray:
        """Sum of frames placed every `hop` samples: `(T - 1) * hop + n_fft` samples, vectorised per hop slot."""
        t, hop = frames_TN.shape[0], self.hop_length
        slots = -(-self.n_fft // hop)
        padded = np.zeros((t, slots * hop), frames_TN.dtype)
        padded[:, : self.n_fft] = frames_TN
        padded = padded.reshape(t, slots, hop)
        out = np.zeros((t + slots - 1, hop), frames_TN.dtype)
        for k in range(slots):
            out[k : k + t] += padded[:, k]
        return out.reshape(-1)[: (t - 1) * hop + self.n_fft]

    def griffin_lim(self, mag_TF: np.ndarray, n_iter: int, momentum: float = 0.99) -> np.ndarray:
        """float32 PCM of `T * hop` samples from magnitudes, by fast Griffin-Lim (Perraudin et al. 2013).

        numpy/scipy and float32 on purpose: synthesis has no exactness contract, runs single-threaded without
        touching torch's process-wide thread pool (the streaming detokenizer decodes beside a running model),
        and is ~1.7x faster than torch for these small FFTs. The initial phase has a fixed seed, so decoding is
        deterministic.
        """
        from scipy import fft

        n_frames, n_fft, pad = mag_TF.shape[0], self.n_fft, self.n_fft // 2
        length = n_frames * self.hop_length
        win = self._window32
        envelope = np.maximum(self._overlap_add(np.broadcast_to(win * win, (n_frames, n_fft))), 1e-8)
        mag_TF = np.asarray(mag_TF, dtype=np.float32)

        def istft(spec_TF: np.ndarray) -> np.ndarray:
            frames = fft.irfft(spec_TF, n=n_fft, axis=-1).astype(np.float32) * win
            return (self._overlap_add(frames) / envelope)[pad : pad + length]

        def stft(pcm: np.ndarray) -> np.ndarray:
            padded = np.zeros(length + 2 * pad + n_fft, np.float32)
            padded[pad : pad + length] = pcm
            frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[:: self.hop_length][:n_frames]
            return fft.rfft(frames * win, axis=-1)

        rng = np.random.default_rng(0)
        phase = np.exp(2j * np.pi * rng.random(mag_TF.shape)).astype(np.complex64)
        prev = np.zeros_like(phase)
        for _ in range(n_iter):
            rebuilt = stft(istft(mag_TF * phase))
            phase = rebuilt - (momentum / (1 + momentum)) * prev
            phase /= np.abs(phase) + 1e-16
            prev = rebuilt
        return istft(mag_TF * phase).astype(np.float32)
