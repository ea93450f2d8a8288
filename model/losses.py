"""The two TtT losses from one logits tensor: `L = L_text + lambda * L_audio` (DESIGN §1).

- `L_text` (AR): shifted next-token cross-entropy, logits at position i-1 against `labels[i]`, for every i in
  `batch.text_targets`. Batch reduction: the mean over all text targets of the micro-batch (token-level mean).
- `L_audio` (absorbing diffusion): unshifted cross-entropy at every noised position i, against `labels[i]`, weighted
  `1 / p_doc`, summed per document and divided by that document's eligible-token count (LLaDA SFT normalisation:
  an unbiased estimate of the document's mean per-token loss). Batch reduction: the mean over the documents that have
  at least one eligible token, so a long document does not outweigh a short one.
Padding and prompt tokens are never in either target set (`model.noising` decides the sets), so they contribute
zero. An empty part is an exact zero that stays attached to the graph, so `backward()` always works.
Cross-entropy is computed in float32 on the selected rows only, never on the full [B, L, V] tensor.

Tensor names carry shape suffixes: B batch, L sequence length, V vocabulary, N selected positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.noising import TrainBatch


@dataclass
class LossParts:
    """The total loss, its two parts, and the token/document counts behind them (for logging and accumulation)."""

    loss: torch.Tensor
    text: torch.Tensor
    audio: torch.Tensor
    n_text: int
    """Number of AR (text) targets."""
    n_noised: int
    """Number of masked positions the audio loss was taken at."""
    n_eligible: int
    """Number of eligible (noisable) tokens: the sum of the per-document normalisers."""
    n_audio_docs: int
    """Number of documents averaged in the audio loss."""


def _attached_zero(logits_BLV: torch.Tensor) -> torch.Tensor:
    return logits_BLV.reshape(-1)[:1].sum().float() * 0.0


def text_loss(logits_BLV: torch.Tensor, batch: TrainBatch) -> tuple[torch.Tensor, int]:
    """Mean next-token CE over the text targets, and their number."""
    targets_BL = batch.text_targets[:, 1:]
    n = int(targets_BL.sum())
    if n == 0:
        return _attached_zero(logits_BLV), 0
    pred_NV = logits_BLV[:, :-1][targets_BL].float()
    return F.cross_entropy(pred_NV, batch.labels[:, 1:][targets_BL]), n


def audio_loss(logits_BLV: torch.Tensor, batch: TrainBatch) -> tuple[torch.Tensor, int, int, int]:
    """1/p-weighted, per-document-normalised CE at noised positions, averaged over documents with eligible tokens.

    Returns (loss, noised count, eligible count, document count).
    """
    B = batch.doc_ids.shape[0]
    D = int(batch.doc_ids.max().item()) + 1 if batch.doc_ids.numel() else 0
    n_eligible = int(batch.eligible.sum())
    if n_eligible == 0 or D <= 0:
        return _attached_zero(logits_BLV), 0, 0, 0
    rows_BL = torch.arange(B, device=batch.doc_ids.device).unsqueeze(1).expand_as(batch.doc_ids)
    key_BL = rows_BL * D + batch.doc_ids.clamp(min=0)
    eligible_per_doc = torch.bincount(key_BL[batch.eligible], minlength=B * D)
    n_docs = int((eligible_per_doc > 0).sum())
    noised = batch.noised
    n_noised = int(noised.sum())
    if n_noised == 0:
        return _attached_zero(logits_BLV), 0, n_eligible, n_docs
    ce_N = F.cross_entropy(logits_BLV[noised].float(), batch.labels[noised], reduction="none")
    weight_N = 1.0 / (batch.mask_prob[noised].float() * eligible_per_doc[key_BL[noised]].float())
    return (ce_N * weight_N).sum() / n_docs, n_noised, n_eligible, n_docs


def ttt_loss(logits_BLV: torch.Tensor, batch: TrainBatch, lambda_audio: float = 1.0) -> LossParts:
    """`L_text + lambda_audio * L_audio` from one forward's logits ([B, L, V], unshifted, any float dtype)."""
    text, n_text = text_loss(logits_BLV, batch)
    audio, n_noised, n_eligible, n_docs = audio_loss(logits_BLV, batch)
    return LossParts(loss=text + lambda_audio * audio, text=text, audio=audio, n_text=n_text, n_noised=n_noised,
                     n_eligible=n_eligible, n_audio_docs=n_docs)
