"""Attention masks for packed TtT rows: the modality-aware mask and the two baseline masks (DESIGN §1).

A query q may attend a key k iff `doc[q] == doc[k] and (k <= q or (audio[q] and audio[k] and seg[q] == seg[k]))`,
where `seg[i]` counts the text-class tokens at positions <= i (so one run of audio tokens shares one segment):
causal for text, bidirectional inside one audio span, causal across spans, nothing across documents. Padding
(doc -1) attends only to itself, so no softmax row is empty (an empty row gives NaN).

The rule is written once, as small `mask_mod` closures in FlexAttention's signature `(b, h, q, k) -> bool`
(torchtitan style) that compose with `and_masks` / `or_masks`. The same closures build both forms:
- `flex_block_mask`: a FlexAttention `BlockMask` (GPU training path; on CPU forward only);
- `dense_mask`: a boolean `[B, 1, L, L]` tensor for SDPA (CPU training, tests), made by calling the closures on
  broadcast index tensors, so the dense and the block-sparse masks cannot drift apart.
Use `additive_mask` for `eager` attention: there a boolean 4D mask is silently wrong (DESIGN §4).

Mask kinds: `"ttt"` (modality-aware), `"ar"` (causal + document, the AR baseline) and `"nar"` (bidirectional
within the document, prompt included, as in LLaDA SFT; the NAR baseline).

Tensor names carry shape suffixes: B batch, L sequence length, H heads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.nn.attention.flex_attention import BlockMask, and_masks, create_block_mask, or_masks

from model.vocab import TokenSpec

MaskKind = Literal["ttt", "ar", "nar"]
MASK_KINDS: tuple[str, ...] = ("ttt", "ar", "nar")

#: `(b, h, q, k) -> bool` — index tensors in, boolean tensor out (FlexAttention's `mask_mod` signature).
MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def segment_ids(audio_BL: torch.Tensor) -> torch.Tensor:
    """`seg[i]` = number of text-class tokens at positions <= i; consecutive audio tokens share one value."""
    return torch.cumsum((~audio_BL).to(torch.int32), dim=1)


def document_positions(doc_BL: torch.Tensor) -> torch.Tensor:
    """Position ids that restart at 0 at every document start (padding runs restart too; they see only themselves)."""
    B, L = doc_BL.shape
    idx_BL = torch.arange(L, device=doc_BL.device).expand(B, L)
    starts_BL = torch.ones_like(doc_BL, dtype=torch.bool)
    starts_BL[:, 1:] = doc_BL[:, 1:] != doc_BL[:, :-1]
    first_BL = torch.where(starts_BL, idx_BL, torch.zeros_like(idx_BL)).cummax(dim=1).values
    return idx_BL - first_BL


# --- composable mask_mods --------------------------------------------------------------------------------------
def causal_mask_mod() -> MaskMod:
    """k <= q."""
    def causal(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return k <= q
    return causal


def document_mask_mod(doc_BL: torch.Tensor) -> MaskMod:
    """Same document; a padding query (doc -1) sees only its own position."""
    def document(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        dq = doc_BL[b, q]
        return (dq == doc_BL[b, k]) & ((dq >= 0) | (q == k))
    return document


def audio_span_mask_mod(audio_BL: torch.Tensor, seg_BL: torch.Tensor) -> MaskMod:
    """Both tokens audio-class and in the same audio span (same segment id): bidirectional inside a span."""
    def same_audio_span(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return audio_BL[b, q] & audio_BL[b, k] & (seg_BL[b, q] == seg_BL[b, k])
    return same_audio_span


def build_mask_mod(input_ids_BL: torch.Tensor, doc_BL: torch.Tensor, spec: TokenSpec, kind: MaskKind) -> MaskMod:
    """The full `mask_mod` of one mask kind for a batch of packed rows."""
    document = document_mask_mod(doc_BL)
    if kind == "nar":
        return document
    if kind == "ar":
        return and_masks(document, causal_mask_mod())
    if kind == "ttt":
        audio_BL = spec.is_audio(input_ids_BL)
        return and_masks(document, or_masks(causal_mask_mod(), audio_span_mask_mod(audio_BL, segment_ids(audio_BL))))
    raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")


# --- materialised masks ----------------------------------------------------------------------------------------
def dense_mask(input_ids_BL: torch.Tensor, doc_BL: torch.Tensor, spec: TokenSpec, kind: MaskKind) -> torch.Tensor:
    """Boolean `[B, 1, L, L]` mask (True = may attend) for SDPA, from the same closures as the BlockMask."""
    B, L = input_ids_BL.shape
    dev = input_ids_BL.device
    mask_mod = build_mask_mod(input_ids_BL, doc_BL, spec, kind)
    b = torch.arange(B, device=dev).view(B, 1, 1)
    q = torch.arange(L, device=dev).view(1, L, 1)
    k = torch.arange(L, device=dev).view(1, 1, L)
    h = torch.zeros((), dtype=torch.long, device=dev)
    return mask_mod(b, h, q, k).expand(B, L, L).unsqueeze(1)


def additive_mask(mask_B1LL: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where allowed, the dtype's minimum elsewhere: the form `eager` attention needs."""
    zero = torch.zeros((), dtype=dtype, device=mask_B1LL.device)
    return torch.where(mask_B1LL, zero, torch.finfo(dtype).min)


def flex_block_mask(input_ids_BL: torch.Tensor, doc_BL: torch.Tensor, spec: TokenSpec, kind: MaskKind,
                    block_size: int = 128) -> BlockMask:
    """FlexAttention `BlockMask` for a batch (one per forward, shared by every layer).

    The mask depends on the row contents (documents, spans), so it is rebuilt per batch; what is cached is the
    compiled mask builder, which torch.compile keys on the batch shape (hence fixed-length packed rows compile once).
    """
    B, L = input_ids_BL.shape
    mask_mod = build_mask_mod(input_ids_BL, doc_BL, spec, kind)
    compile_builder = input_ids_BL.device.type == "cuda"
    return create_block_mask(mask_mod, B, None, L, L, device=input_ids_BL.device, BLOCK_SIZE=block_size,
                             _compile=compile_builder)
