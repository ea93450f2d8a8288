"""The exact KV cache of a committed token sequence (batch size 1), and provisional forwards on top of it.

Why the cache is exact (DESIGN §1): under the modality-aware mask a token attends only to earlier tokens and to
the tokens of its own audio span, so once a span is closed (and text follows it) nothing appended later can
change any committed token's keys and values. `CachedContext` therefore
- `extend`s the committed sequence by new tokens with one forward whose queries are the new tokens and whose keys
  are the cached prefix plus the new tokens (the mask rows come from the same `mask_mod` closures as training's
  dense and FlexAttention masks, so the rule exists once), and
- `peek`s at a provisional span (a block being denoised): the same forward, after which the span's keys and
  values are cropped off again, so the prefix is never recomputed and the span always is.
It refuses to append audio-class tokens directly after an audio-class token under the `ttt` mask: they would join
the open span and the cached keys of its earlier tokens would go stale. The `nar` mask (bidirectional over the
whole document) has no exact prefix cache at all, so it is refused too.

Attention backends: `sdpa` takes the boolean mask, `eager` an additive one (a boolean 4D mask is silently wrong
there, DESIGN §4). FlexAttention needs a BlockMask per query length and is the training path only.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.models.qwen2.modeling_qwen2 import Qwen2ForCausalLM

from model.attention import MaskKind, additive_mask, build_mask_mod
from model.vocab import TokenSpec

CACHEABLE_KINDS: tuple[str, ...] = ("ttt", "ar")
#: transformers renamed `forward(past_key_values=...)` to `cache=...` within our supported 5.x range (the old name
#: warns from 5.2x and goes in 5.40), so the keyword is taken from the installed signature.
CACHE_KWARG = "cache" if "cache" in inspect.signature(Qwen2ForCausalLM.forward).parameters else "past_key_values"


def mask_rows(ids_L: torch.Tensor, start: int, spec: TokenSpec, kind: MaskKind) -> torch.Tensor:
    """Boolean `[L - start, L]` rows of the one-document mask of `kind` for the queries `start .. L-1`."""
    L = ids_L.numel()
    mask_mod = build_mask_mod(ids_L[None], torch.zeros_like(ids_L)[None], spec, kind)
    q = torch.arange(start, L, device=ids_L.device)[:, None]
    k = torch.arange(L, device=ids_L.device)[None, :]
    zero = torch.zeros((), dtype=torch.long, device=ids_L.device)
    return mask_mod(zero, zero, q, k).expand(L - start, L)


class CachedContext:
    """A committed token sequence of one document with the exact KV cache of every token in it."""

    def __init__(self, model: PreTrainedModel, spec: TokenSpec, kind: MaskKind) -> None:
        impl = model.config._attn_implementation
        if impl not in ("sdpa", "eager"):
            raise ValueError(f"the sampler passes dense masks; load the model with attn_implementation='sdpa' "
                             f"(or 'eager'), not {impl!r}")
        if kind not in CACHEABLE_KINDS:
            raise ValueError(f"mask kind {kind!r} has no exact prefix cache; cacheable kinds: {CACHEABLE_KINDS}")
        self.model, self.spec, self.kind = model, spec, kind
        self.ids_L = torch.zeros(0, dtype=torch.long, device=model.device)
        self.cache = DynamicCache(config=model.config)

    def __len__(self) -> int:
        return self.ids_L.numel()

    def extend(self, new_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Commit `new_ids` (their KV enters the cache); returns the float32 logits `[V]` of the last new token."""
        new_N = torch.as_tensor(new_ids, dtype=torch.long, device=self.ids_L.device).reshape(-1)
        if new_N.numel() == 0:
            raise ValueError("extend needs at least one token")
        logits_1V = self._forward(new_N, n_logits=1)
        self.ids_L = torch.cat([self.ids_L, new_N])
        return logits_1V[0]

    def peek(self, span_N: torch.Tensor, n_logits: int) -> torch.Tensor:
        """float32 logits `[n_logits, V]` of the last `n_logits` tokens of a provisional `span_N` appended after the
        committed sequence; the cache is left exactly as it was."""
        logits_NV = self._forward(span_N, n_logits)
        self.cache.crop(-span_N.numel())
        return logits_NV

    def _forward(self, new_N: torch.Tensor, n_logits: int) -> torch.Tensor:
        P, N = len(self), new_N.numel()
        if self.kind == "ttt" and P and bool(self.spec.is_audio(self.ids_L[-1])) and bool(self.spec.is_audio(new_N[0])):
            raise ValueError("appending audio-class tokens to an open audio span would make its cached keys stale; "
                             "commit a span whole, followed by text")
        ids_L = torch.cat([self.ids_L, new_N])
        mask_11NL = mask_rows(ids_L, P, self.spec, self.kind)[None, None]
        if self.model.config._attn_implementation == "eager":
            mask_11NL = additive_mask(mask_11NL, self.model.dtype)
        positions_1N = torch.arange(P, P + N, device=new_N.device)[None]
        with torch.no_grad():
            out = self.model(input_ids=new_N[None], attention_mask=mask_11NL, position_ids=positions_1N,
                             use_cache=True, logits_to_keep=n_logits, **{CACHE_KWARG: self.cache})
        return out.logits[0].float()
