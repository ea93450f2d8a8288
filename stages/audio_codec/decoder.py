"""The learned token -> log-mel decoder of the embedded audio codec.

Why: a centroid lookup gives every occurrence of a code the same `stack` mel frames, so transitions between
tokens are staircases and within-token dynamics are averaged away (worst at 25 Hz and below). A small dilated
conv net over the code sequence sees ~±15 tokens of context and predicts a *residual* on top of the centroid
lookup; its output layer starts at zero, so an untrained decoder is exactly the centroid decoder and training can
only move away from it where the data says so. It trains in about a minute on 2 CPU cores.

Shapes: `B` batch, `N` tokens, `T = N * stack` mel frames, `M` mel bins, `W` channels, `K` codes.
"""

from __future__ import annotations

import torch
from torch import nn

#: Dilations of the residual conv blocks (kernel 5): receptive field 1 + 4 * sum = 33 tokens.
DILATIONS = (1, 2, 4, 1)
KERNEL_SIZE = 5
CROP_TOKENS = 64
BATCH_SIZE = 16
LEARNING_RATE = 2e-3


class _ResBlock(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, width)
        self.conv = nn.Conv1d(width, width, KERNEL_SIZE, padding=dilation * (KERNEL_SIZE - 1) // 2, dilation=dilation)
        self.mix = nn.Conv1d(width, width, 1)

    def forward(self, h_BWN: torch.Tensor) -> torch.Tensor:
        return h_BWN + self.mix(nn.functional.gelu(self.conv(self.norm(h_BWN))))


class TokenMelDecoder(nn.Module):
    """codes `(B, N)` -> log-mel `(B, N * stack, M)` = centroid frames + learned residual."""

    def __init__(self, centroids_KD: torch.Tensor, stack: int, n_mels: int, width: int) -> None:
        super().__init__()
        k, d = centroids_KD.shape
        if d != stack * n_mels:
            raise ValueError(f"centroids have {d} dims, expected stack * n_mels = {stack * n_mels}")
        self.stack, self.n_mels = stack, n_mels
        self.register_buffer("centroids", centroids_KD.to(torch.float32).clone())
        self.embed = nn.Embedding(k, width)
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(_ResBlock(width, dil) for dil in DILATIONS)
        self.out = nn.Linear(width, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, codes_BN: torch.Tensor) -> torch.Tensor:
        base_BND = self.centroids[codes_BN]
        h_BWN = (self.embed(codes_BN) + self.inp(base_BND)).transpose(1, 2)
        for block in self.blocks:
            h_BWN = block(h_BWN)
        y_BND = base_BND + self.out(h_BWN.transpose(1, 2))
        b, n, _ = y_BND.shape
        return y_BND.reshape(b, n * self.stack, self.n_mels)


def fit_decoder(
    centroids_KD: torch.Tensor, stack: int, width: int, codes_N: torch.Tensor, log_mel_TM: torch.Tensor,
    steps: int, seed: int,
) -> TokenMelDecoder:
    """A decoder trained by L1 on log-mel over random crops of one concatenated token stream.

    `codes_N` / `log_mel_TM` are all training clips back to back (`T = N * stack`); a crop straddling two clips
    sees one clip's trailing silence next to the next one's leading silence, which is harmless. RNG use is
    local (`fork_rng`), so fitting a codec never disturbs the caller's global torch seed.
    """
    n = codes_N.shape[0]
    crop = min(CROP_TOKENS, n)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        decoder = TokenMelDecoder(centroids_KD, stack, log_mel_TM.shape[1], width)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(decoder.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=max(steps, 1))
        offsets = torch.arange(crop)
        frame_offsets = torch.arange(crop * stack)
        decoder.train()
        for _ in range(steps):
            starts = torch.randint(0, n - crop + 1, (BATCH_SIZE,), generator=gen)
            codes_BN = codes_N[starts[:, None] + offsets]
            target_BTM = log_mel_TM[starts[:, None] * stack + frame_offsets]
            loss = (decoder(codes_BN) - target_BTM).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return decoder.eval()
