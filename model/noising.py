"""Training-batch preparation: absorbing-diffusion noising, BANOM / PPM / SST, and the `ar` / `nar` baselines.

`prepare_batch` turns packed rows (`input_ids`, `doc_ids`, `role`, each [B, L]) into a `TrainBatch`: the model
input, the clean labels, and the masks `model.losses` reduces over. It runs at load time, on CPU, driven by one
`torch.Generator`, so a batch is a pure function of (rows, config, generator state).

Objective `ttt` (DESIGN §1), in this order:
1. BANOM: with probability `p_clean` the whole micro-batch stays clean (no SST, no PPM, no noise) and trains the AR
   loss only, so text after an audio span also learns from clean audio, as at inference.
2. SST, per document with probability `p_trunc`: the document's last tail span (the audio between
   `<|begin_of_audio_tail|>` and `<|end_of_audio_tail|>`) is cut to a random 30-90 % of its length (>= 5 tokens;
   spans of <= 10 tokens are left alone); its end marker and everything after it in the document become padding in
   place (pad id, doc -1, ROLE_PAD), so the row length is unchanged.
3. Eligible tokens: assistant-side audio-class tokens (audio codes and end markers) — never prompt audio, never
   padding. PPM, per document with probability `p_prefix`: pick one of its eligible audio spans uniformly and keep
   every eligible token before that span clean; those tokens then count as context, not as eligible.
4. Noise, per document: `t ~ U(t_min, 1)` (`t_min` 0 by default: DESIGN's `U(0,1)`), `p = (1-eps) t + eps`; each
   eligible token becomes `<|mask|>` with probability p.
AR targets are the text-class tokens of assistant turns (begin-of-audio markers and `<|im_end|>` included; an audio
token is never an AR target, even when the previous token is text).

Baselines: `ar` — no noise, every assistant token is a next-token target, causal mask; `nar` — no AR targets, every
assistant token is eligible for noising, mask bidirectional within the document (LLaDA SFT). BANOM / PPM / SST
belong to the hybrid objective and are not applied to the baselines.

Tensor names carry shape suffixes: B batch, L sequence length, D documents per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from model.attention import MaskKind, segment_ids
from model.objective import ObjectiveConfig
from model.vocab import ROLE_ASSISTANT, ROLE_PAD, TokenSpec


@dataclass
class TrainBatch:
    """One micro-batch ready for a forward (`input_ids`, `doc_ids`, `mask_kind`) and the losses (the rest)."""

    input_ids: torch.Tensor
    """[B, L] model input: `<|mask|>` at noised positions, padding where SST dropped tokens."""
    labels: torch.Tensor
    """[B, L] clean ids (after SST): the targets of both losses."""
    doc_ids: torch.Tensor
    """[B, L] document index, -1 for padding."""
    role: torch.Tensor
    """[B, L] ROLE_* per token."""
    text_targets: torch.Tensor
    """[B, L] bool: `labels[i]` is a next-token target, predicted from position i-1."""
    eligible: torch.Tensor
    """[B, L] bool: tokens that could be noised in this draw; their per-document count normalises the audio loss."""
    noised: torch.Tensor
    """[B, L] bool: tokens replaced by `<|mask|>`; the audio loss is taken here (unshifted)."""
    mask_prob: torch.Tensor
    """[B, L] float: the masking probability p of the token's document (1 where nothing is eligible)."""
    mask_kind: MaskKind
    """Attention mask the forward must use for this batch."""
    clean: bool
    """True for a BANOM clean micro-batch (AR loss only)."""

    def to(self, device: torch.device | str) -> "TrainBatch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return TrainBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})


def _num_docs(doc_BL: torch.Tensor) -> int:
    return int(doc_BL.max().item()) + 1 if doc_BL.numel() else 0


def _same_doc_as_previous(doc_BL: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(doc_BL, dtype=torch.bool)
    out[:, 1:] = (doc_BL[:, 1:] == doc_BL[:, :-1]) & (doc_BL[:, 1:] >= 0)
    return out


def sst_keep_length(span_len: int, u: float, cfg: ObjectiveConfig) -> int | None:
    """How many tail tokens SST keeps for a uniform draw `u`, or None when the span is too short to cut."""
    if span_len <= cfg.trunc_skip_len:
        return None
    lo = max(cfg.trunc_min_keep, math.ceil(cfg.trunc_min_frac * span_len))
    hi = max(lo, math.floor(cfg.trunc_max_frac * span_len))
    return lo + min(int(u * (hi - lo + 1)), hi - lo)


def truncate_tail(input_ids: torch.Tensor, doc_ids: torch.Tensor, role: torch.Tensor, spec: TokenSpec,
                  cfg: ObjectiveConfig, coin_BD: torch.Tensor, frac_BD: torch.Tensor) -> None:
    """SST in place on [B, L] rows: documents with `coin < p_trunc` lose the end of their last tail span."""
    B, D = coin_BD.shape
    for b in range(B):
        for d in range(D):
            if coin_BD[b, d] >= cfg.p_trunc:
                continue
            pos = torch.nonzero(doc_ids[b] == d).flatten()
            ends = pos[(input_ids[b, pos] == spec.end_audio_tail_id) & (role[b, pos] == ROLE_ASSISTANT)]
            if ends.numel() == 0:
                continue
            end = int(ends[-1])
            begins = pos[(input_ids[b, pos] == spec.begin_audio_tail_id) & (pos < end)]
            if begins.numel() == 0:
                continue
            start = int(begins[-1]) + 1
            keep = sst_keep_length(end - start, float(frac_BD[b, d]), cfg)
            if keep is None:
                continue
            drop = pos[pos >= start + keep]
            input_ids[b, drop] = spec.pad_id
            doc_ids[b, drop] = -1
            role[b, drop] = ROLE_PAD


def prefix_clean(eligible_BL: torch.Tensor, audio_BL: torch.Tensor, doc_ids: torch.Tensor, cfg: ObjectiveConfig,
                 coin_BD: torch.Tensor, pick_BD: torch.Tensor) -> torch.Tensor:
    """PPM: [B, L] bool of eligible tokens kept clean because they precede the chosen span of their document."""
    seg_BL = segment_ids(audio_BL)
    keep_BL = torch.zeros_like(eligible_BL)
    B, D = coin_BD.shape
    for b in range(B):
        for d in range(D):
            if coin_BD[b, d] >= cfg.p_prefix:
                continue
            pos = torch.nonzero((doc_ids[b] == d) & eligible_BL[b]).flatten()
            if pos.numel() == 0:
                continue
            spans = torch.unique(seg_BL[b, pos])  # sorted: spans in document order
            chosen = spans[min(int(float(pick_BD[b, d]) * spans.numel()), spans.numel() - 1)]
            keep_BL[b, pos[seg_BL[b, pos] < chosen]] = True
    return keep_BL


def _noise(labels: torch.Tensor, doc_ids: torch.Tensor, eligible: torch.Tensor, spec: TokenSpec, eps: float,
           t_BD: torch.Tensor, u_BL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Absorbing noise: each eligible token is masked with its document's p = (1-eps) t + eps."""
    p_BD = (1.0 - eps) * t_BD + eps
    p_BL = torch.gather(p_BD, 1, doc_ids.clamp(min=0))
    noised = eligible & (u_BL < p_BL)
    input_ids = torch.where(noised, torch.full_like(labels, spec.mask_id), labels)
    return input_ids, noised, torch.where(eligible, p_BL, torch.ones_like(p_BL))


def prepare_batch(input_ids: torch.Tensor, doc_ids: torch.Tensor, role: torch.Tensor, spec: TokenSpec,
                  cfg: ObjectiveConfig, generator: torch.Generator) -> TrainBatch:
    """Packed rows -> `TrainBatch` (int64 tensors) for the configured objective (see the module docstring).

    Inputs are not modified; shard dtypes (int32 ids, int8 roles) are accepted. Every random number is drawn up
    front in a fixed order and shape, so the draw does not depend on which branches fire and one generator state
    gives one batch.
    """
    if not input_ids.shape == doc_ids.shape == role.shape or input_ids.dim() != 2:
        raise ValueError(f"input_ids, doc_ids and role must be [B, L] alike, got {input_ids.shape}, "
                         f"{doc_ids.shape}, {role.shape}")
    # Shards store int32 ids/doc ids and int8 roles; work on int64 copies (gather/bincount want int64 indices).
    labels, doc_ids, role = (t.to(torch.long, copy=True) for t in (input_ids, doc_ids, role))
    B, L = labels.shape
    D = max(_num_docs(doc_ids), 1)
    g = dict(generator=generator, device=generator.device)
    clean_draw = float(torch.rand((), **g))
    sst_coin, sst_frac, ppm_coin, ppm_pick, t_BD = (torch.rand(B, D, **g).to(labels.device) for _ in range(5))
    u_BL = torch.rand(B, L, **g).to(labels.device)
    t_BD = cfg.t_min + (1.0 - cfg.t_min) * t_BD  # t ~ U(t_min, 1); t_min = 0 leaves the draw as it is

    assistant = (role == ROLE_ASSISTANT) & (doc_ids >= 0)
    none = torch.zeros_like(assistant)
    if cfg.objective == "ar":
        targets = assistant & _same_doc_as_previous(doc_ids)
        return TrainBatch(labels.clone(), labels, doc_ids, role, targets, none, none.clone(),
                          torch.ones(B, L, device=labels.device), "ar", clean=False)
    if cfg.objective == "nar":
        model_in, noised, p_BL = _noise(labels, doc_ids, assistant, spec, cfg.eps, t_BD, u_BL)
        return TrainBatch(model_in, labels, doc_ids, role, none, assistant, noised, p_BL, "nar", clean=False)

    clean = clean_draw < cfg.p_clean
    if not clean:
        truncate_tail(labels, doc_ids, role, spec, cfg, sst_coin, sst_frac)
    audio = spec.is_audio(labels)
    assistant = (role == ROLE_ASSISTANT) & (doc_ids >= 0)
    targets = assistant & ~audio & _same_doc_as_previous(doc_ids)
    if clean:
        return TrainBatch(labels.clone(), labels, doc_ids, role, targets, none, none.clone(),
                          torch.ones(B, L, device=labels.device), "ttt", clean=True)
    eligible = assistant & audio
    eligible &= ~prefix_clean(eligible, audio, doc_ids, cfg, ppm_coin, ppm_pick)
    model_in, noised, p_BL = _noise(labels, doc_ids, eligible, spec, cfg.eps, t_BD, u_BL)
    return TrainBatch(model_in, labels, doc_ids, role, targets, eligible, noised, p_BL, "ttt", clean=False)
