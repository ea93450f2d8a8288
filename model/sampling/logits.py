"""Pure decision rules on logits: token-class restriction, text sampling, diffusion proposals, remasking, guidance.

Every function takes tensors and numbers and returns tensors or ids; nothing here runs the model, so the cached
sampler and the full-recompute reference make identical decisions from identical logits.

Shape suffixes: N positions, V vocabulary (logit width; may exceed the tokenizer's vocabulary when the embedding
was padded to a multiple of 64, and those extra ids are never allowed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.vocab import TokenSpec


@dataclass(frozen=True)
class TokenClasses:
    """Boolean `[V]` masks of the ids a position may take (DESIGN §1 token classes).

    Text positions take text-class ids; audio positions take audio codes plus the end marker *of their own span
    kind* (a chunk span ends with `<|end_of_audio|>`, a tail span with `<|end_of_audio_tail|>`, as the layout
    writes them); the mask id is never a prediction. `any_V` is for the NAR baseline, whose positions may be text
    or audio.
    """

    text_V: torch.Tensor
    chunk_V: torch.Tensor
    tail_V: torch.Tensor
    any_V: torch.Tensor

    @classmethod
    def build(cls, spec: TokenSpec, width: int, device: torch.device | str) -> "TokenClasses":
        if width < spec.vocab_size:
            raise ValueError(f"logit width {width} is smaller than the token spec's vocabulary {spec.vocab_size}")
        ids = torch.arange(width, device=device)
        real = ids < spec.vocab_size
        codes = spec.is_audio_code(ids)
        return cls(text_V=real & ~spec.is_audio(ids), chunk_V=codes | (ids == spec.end_audio_id),
                   tail_V=codes | (ids == spec.end_audio_tail_id), any_V=real & (ids != spec.mask_id))

    def audio(self, spec: TokenSpec, end_id: int) -> torch.Tensor:
        """The allowed ids of a span that the end marker `end_id` closes."""
        return self.chunk_V if end_id == spec.end_audio_id else self.tail_V


def restrict(logits_NV: torch.Tensor, allowed_V: torch.Tensor) -> torch.Tensor:
    """Disallowed ids get -inf, so neither argmax, sampling nor softmax confidence can pick them."""
    return logits_NV.masked_fill(~allowed_V, float("-inf"))


def guided(cond_NV: torch.Tensor, uncond_NV: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance as in LLaDA: `un + (s + 1) * (cond - un)`; `s = 0` is the conditional logits."""
    return uncond_NV + (scale + 1.0) * (cond_NV - uncond_NV)


def sample_text(logits_V: torch.Tensor, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator) -> int:
    """One AR token: greedy when `temperature == 0`, else temperature + top-k (0 = off) + top-p (1 = off)."""
    if temperature == 0.0:
        return int(torch.argmax(logits_V))
    scaled_V = logits_V.to(torch.float64) / temperature
    if 0 < top_k < scaled_V.numel():
        kth = torch.topk(scaled_V, top_k).values[-1]
        scaled_V = scaled_V.masked_fill(scaled_V < kth, float("-inf"))
    if top_p < 1.0:
        sorted_V, order_V = torch.sort(scaled_V, descending=True)
        probs_V = torch.softmax(sorted_V, dim=-1)
        drop_sorted_V = probs_V.cumsum(dim=-1) - probs_V >= top_p  # keep the smallest prefix reaching top_p
        scaled_V = scaled_V.masked_fill(torch.empty_like(drop_sorted_V).scatter_(0, order_V, drop_sorted_V),
                                        float("-inf"))
    probs_V = torch.softmax(scaled_V, dim=-1)
    return int(torch.multinomial(probs_V, 1, generator=generator))


def propose(logits_NV: torch.Tensor, temperature: float,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion proposal per position: `(x0_N, confidence_N)`.

    `x0` is the argmax of the logits perturbed by float64 Gumbel noise (LLaDA's `exp(l) / (-log u)^T`, taken in
    log space as `l - T log(-log u)` so large logits cannot overflow; identical argmax). float64 matters: in low
    precision the perturbed scores tie and sampling degrades (LLaDA's observation). `confidence` is the model's
    probability of `x0` under the unperturbed logits (LLaDA's low-confidence remasking score).
    """
    lg_NV = logits_NV.to(torch.float64)
    if temperature > 0.0:
        u_NV = torch.rand(lg_NV.shape, dtype=torch.float64, generator=generator, device=lg_NV.device)
        x0_N = torch.argmax(lg_NV - temperature * torch.log(-torch.log(u_NV)), dim=-1)
    else:
        x0_N = torch.argmax(lg_NV, dim=-1)
    confidence_N = torch.softmax(lg_NV, dim=-1).gather(-1, x0_N[:, None])[:, 0]
    return x0_N, confidence_N


def transfer_schedule(n_masked: int, steps: int) -> list[int]:
    """Tokens to commit per step: `n_masked` spread evenly over `steps` (the remainder goes to the first steps)."""
    if steps < 1 or steps > n_masked:
        raise ValueError(f"need 1 <= steps <= n_masked, got steps={steps}, n_masked={n_masked}")
    base, extra = divmod(n_masked, steps)
    return [base + 1] * extra + [base] * (steps - extra)


def choose_commits(confidence_N: torch.Tensor, masked_N: torch.Tensor, count: int | None,
                   threshold: float | None) -> torch.Tensor:
    """Which masked positions to commit this step (boolean `[N]`).

    Low-confidence remasking (`count`): the `count` most confident masked positions. Parallel decoding
    (`threshold`, Fast-dLLM): every masked position whose confidence reaches the threshold, and at least the
    single most confident one so each step makes progress.
    """
    score_N = confidence_N.masked_fill(~masked_N, float("-inf"))
    chosen_N = torch.zeros_like(masked_N)
    if threshold is not None:
        chosen_N = masked_N & (score_N >= threshold)
        if not bool(chosen_N.any()):
            chosen_N[torch.argmax(score_N)] = True
        return chosen_N
    if count is None or not 1 <= count <= int(masked_N.sum()):
        raise ValueError(f"count must be in [1, masked positions], got {count}")
    chosen_N[torch.topk(score_N, count).indices] = True
    return chosen_N
