"""The authors' inference algorithm with no cache at all: the full-recompute reference for `model.sampler.generate`.

Every AR token and every denoising step runs the model over the whole sequence (prompt, everything generated,
the current canvas) through its packed-row path (`doc_ids`: the model builds the modality-aware mask and the
positions itself). The decisions (class restriction, sampling, remasking, guidance, span closing) are the
sampler's own pure rules, so both must choose the same tokens; what differs — and what the parity test
(`tests/model/test_sampler.py`) and `benchmarks/inference.py` exercise — is how the logits are obtained: here no
KV cache, no mask rows, no position bookkeeping, no lazily synchronised unconditional branch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from transformers import PreTrainedModel

from model.sampler import LogitsHook, SamplerConfig, SpanPlan, denoise_block
from model.sampling.logits import TokenClasses, guided, restrict, sample_text
from model.streaming import AudioSpan, Done, Event, TextToken
from model.vocab import TokenSpec


def _full_logits(model: PreTrainedModel, ids: Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    """float32 logits `[n, V]` of the last `n` positions of one whole document, recomputed from scratch."""
    x_1L = torch.as_tensor(ids, dtype=torch.long, device=model.device).reshape(1, -1)
    return model(input_ids=x_1L, doc_ids=torch.zeros_like(x_1L), mask_kind="ttt").logits[0, -n:].float()


@torch.no_grad()
def reference_generate(model: PreTrainedModel, prompt_ids: Sequence[int], spec: TokenSpec,
                       config: SamplerConfig = SamplerConfig(), *, uncond_prompt_ids: Sequence[int] = (),
                       logits_hook: LogitsHook | None = None) -> Iterator[Event]:
    """Same events as `model.sampler.generate` for the same arguments, computed without any cache."""
    device = model.device
    classes = TokenClasses.build(spec, model.config.vocab_size, device)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    def hooked(positions_N: torch.Tensor, logits_NV: torch.Tensor) -> torch.Tensor:
        return logits_NV if logits_hook is None else logits_hook(positions_N, logits_NV)

    P = len(prompt_ids)
    seq = list(prompt_ids)
    while len(seq) - P < config.max_new_tokens:
        logits_V = hooked(torch.tensor([len(seq)], device=device), _full_logits(model, seq, 1))[0]
        token = sample_text(restrict(logits_V, classes.text_V), config.text_temperature, config.top_k,
                            config.top_p, generator)
        yield TextToken(token)
        seq.append(token)
        if token in (spec.im_end_id, spec.pad_id):
            yield Done(tuple(seq[P:]), "eos")
            return
        if token not in (spec.begin_audio_id, spec.begin_audio_tail_id):
            continue
        plan = SpanPlan.for_begin(token, spec, config)
        allowed_V = classes.audio(spec, plan.end_id)
        span: list[int] = []
        while True:
            n = plan.next_block(len(span))
            canvas_N = torch.tensor(seq + span + [spec.mask_id] * n, device=device)
            positions_n = torch.arange(canvas_N.numel() - n, canvas_N.numel(), device=device)

            def block_logits(x_N: torch.Tensor) -> torch.Tensor:
                logits_nV = _full_logits(model, x_N, n)
                if config.cfg_scale > 0:
                    uncond_N = torch.cat([torch.tensor(list(uncond_prompt_ids), dtype=torch.long, device=device),
                                          x_N[P:]])
                    logits_nV = guided(logits_nV, _full_logits(model, uncond_N, n), config.cfg_scale)
                return hooked(positions_n, logits_nV)

            canvas_N = denoise_block(canvas_N, canvas_N.numel() - n, canvas_N.numel(), block_logits, allowed_V,
                                     config, generator)
            closed = plan.close(canvas_N[len(seq):])
            if closed is not None:
                break
            span = canvas_N[len(seq):].tolist()
        span_N, ended = closed
        yield AudioSpan(tuple((span_N[:-1] - spec.audio_start).tolist()), plan.kind, ended)
        seq.extend(span_N.tolist())
    yield Done(tuple(seq[P:]), "length")
