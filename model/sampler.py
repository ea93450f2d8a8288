"""Inference: TtT's block-wise diffusion sampler (DESIGN §1, Algorithm 1) and the two baseline decoders.

All three are pure generator functions `(model, prompt_ids, spec, config) -> events` (`model.streaming`): a
`TextToken` per AR-chosen token, an `AudioSpan` per completed audio span, then `Done`. Batch size 1 (one
conversation at a time; an evaluation loop runs prompts one after another). The model must be in eval mode and
loaded with `attn_implementation="sdpa"` (or `eager`).

`generate` (TtT). Text is decoded autoregressively with an exact KV cache. When the AR head emits
`<|begin_of_audio|>` (a chunk span) or `<|begin_of_audio_tail|>` (the tail span), a block of masks is appended:
`chunk_len` masks for a chunk span (the layout fixes its length), `block_len` for the tail span. The block is
denoised over `steps_per_block` steps. Each step runs one forward whose queries are the span so far (earlier
blocks of the span plus the block) and whose keys are the cached prefix plus the span, bidirectional inside the
span (`model.sampling.context`): the prefix is never recomputed, because under the modality-aware mask nothing
after it can change it. Per step every masked position proposes a token (argmax, or float64 Gumbel-max sampling
at `audio_temperature > 0`) and then either the most confident `n / steps` proposals are committed
(`strategy="low_confidence"`, LLaDA's low-confidence remasking with an even per-step budget) or every proposal
above `threshold` (`strategy="threshold"`, Fast-dLLM's parallel decoding, at least one per step). Audio positions
may only take audio codes and their span's end marker; text positions only text-class ids. When the block is full,
the span is cut after its first end marker and decoding returns to AR; with no end marker another block is
appended, until the span holds its limit of codes (`chunk_len`, or `max_audio_len` for the tail), where the span's
end marker is appended so the sequence keeps the training layout. The completed span is yielded at once (the
streaming detokenizer can start on it), then one forward over `begin marker + span` writes their exact KV and
gives the logits of the next text token.

Classifier-free guidance (`cfg_scale > 0`): audio logits become `un + (s + 1)(cond - un)` (LLaDA's form). The
unconditional branch *drops* the prompt: its context is `uncond_prompt_ids` (e.g. just `<|im_start|>assistant\\n`)
followed by everything generated so far. Dropping rather than LLaDA's replacing the prompt by masks keeps the
unconditional context in the layout the model was trained on (masks in a text prompt would turn it into one
bidirectional "audio span") and makes it shorter; it has its own exact KV cache, brought up to date once per span.

`generate_ar` (the `ar` objective's baseline): the same AR loop, audio token by token too, causal mask, KV cache.
`generate_nar` (the `nar` objective's baseline): LLaDA's semi-autoregressive decoding — `max_new_tokens` masks
(rounded up to whole `block_len` blocks) after the prompt, denoised block by block with the bidirectional document
mask, recomputing the whole sequence at every step (no exact cache exists under that mask).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import PreTrainedModel

from model.layout import OPEN_CHUNK_OR_CONTINUE
from model.sampling.context import CachedContext
from model.sampling.logits import (TokenClasses, choose_commits, guided, propose, restrict, sample_text,
                                   transfer_schedule)
from model.streaming import AudioSpan, Done, Event, SpanKind, TextToken
from model.vocab import TokenSpec

#: `hook(positions_N, logits_NV) -> logits_NV`, applied to every logits row before a decision is made from it.
#: `positions` are the absolute positions (prompt + generated) of the tokens being chosen. For biasing (e.g.
#: banning words) and for tests and benchmarks that script the layout an untrained model would not produce.
LogitsHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SamplerConfig:
    """Decoding knobs (DESIGN §1 "Inference"); the defaults are greedy."""

    max_new_tokens: int = 1024
    """Generated tokens (text, markers and audio) after which decoding stops; a span in progress is finished first.
    For `generate_nar` the length of the masked canvas (rounded up to whole blocks)."""
    text_temperature: float = 0.0
    """AR sampling temperature; 0 is greedy."""
    top_k: int = 0
    """AR top-k filter (0 = off)."""
    top_p: float = 1.0
    """AR nucleus filter (1 = off)."""
    audio_temperature: float = 0.0
    """Temperature of the float64 Gumbel noise on audio proposals; 0 is argmax."""
    chunk_len: int = 26
    """Codes of a chunk span (the layout's `audio_chunk`): a chunk span is denoised as one block of this many masks
    and its `<|end_of_audio|>` follows the last code."""
    block_len: int = 32
    """Masks per block of the tail span (and per block of `generate_nar`)."""
    steps_per_block: int = 8
    """Denoising steps per full block under low-confidence remasking (a shorter block gets at most one step per
    token). Ignored by the threshold strategy, which runs until the block is full."""
    strategy: Literal["low_confidence", "threshold"] = "low_confidence"
    """`low_confidence`: commit the most confident proposals, an even share of the block per step;
    `threshold`: commit every proposal whose confidence reaches `threshold` (at least one per step)."""
    threshold: float = 0.9
    """Confidence needed to commit under the threshold strategy."""
    cfg_scale: float = 0.0
    """Classifier-free guidance scale `s` for audio (0 = off: `un + 1 * (cond - un)` is the conditional)."""
    max_audio_len: int = 750
    """Most codes in the tail span (30 s at 25 Hz); the end marker is appended when it is reached."""
    seed: int = 0
    """Seed of the sampling noise (only used when a temperature is > 0)."""

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "chunk_len", "block_len", "steps_per_block", "max_audio_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.text_temperature < 0 or self.audio_temperature < 0:
            raise ValueError("temperatures must be >= 0")
        if self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got {self.top_k}, {self.top_p}")
        if self.strategy not in ("low_confidence", "threshold"):
            raise ValueError(f"unknown strategy {self.strategy!r}; expected 'low_confidence' or 'threshold'")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {self.threshold}")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")


@dataclass(frozen=True)
class SpanPlan:
    """How a span opened by a begin marker is decoded: its end marker, block size and code limit."""

    kind: SpanKind
    end_id: int
    block: int
    limit: int

    @classmethod
    def for_begin(cls, begin_id: int, spec: TokenSpec, config: SamplerConfig) -> "SpanPlan":
        if begin_id == spec.begin_audio_id:
            return cls("chunk", spec.end_audio_id, config.chunk_len, config.chunk_len)
        if begin_id == spec.begin_audio_tail_id:
            return cls("tail", spec.end_audio_tail_id, config.block_len, config.max_audio_len)
        raise ValueError(f"id {begin_id} is not a begin-of-audio marker")

    def next_block(self, span_len: int) -> int:
        """Masks in the next block: at most `limit + 1` positions per span (the codes and one end marker)."""
        return min(self.block, self.limit + 1 - span_len)

    def close(self, span_N: torch.Tensor) -> tuple[torch.Tensor, bool] | None:
        """The final span after a full block: cut after the first end marker, or cut to `limit` codes and append
        the end marker; None while neither applies (another block is needed)."""
        ends = torch.nonzero(span_N == self.end_id)
        if ends.numel():
            return span_N[: int(ends[0]) + 1], True
        if span_N.numel() >= self.limit:
            return torch.cat([span_N[: self.limit], span_N.new_tensor([self.end_id])]), False
        return None


def forcing_hook(forced: Mapping[int, int], banned: Sequence[int] = ()) -> LogitsHook:
    """A hook that forces `forced[position]` at those absolute positions and bans the `banned` ids everywhere else.

    A forced id must be one the position's class allows (text-class at text positions, a code or the span's end
    marker at audio positions); the class restriction runs after the hook. Used to pin an answer's opening, and by
    tests and benchmarks to give an untrained model a realistic layout (markers where an answer would have them).
    """
    banned_ids = list(banned)

    def hook(positions_N: torch.Tensor, logits_NV: torch.Tensor) -> torch.Tensor:
        out_NV = logits_NV.clone()
        if banned_ids:
            out_NV[:, banned_ids] = float("-inf")
        for i, position in enumerate(positions_N.tolist()):
            if position in forced:
                out_NV[i] = float("-inf")
                out_NV[i, forced[position]] = 0.0
        return out_NV

    return hook


def _hooked(hook: LogitsHook | None, positions_N: torch.Tensor, logits_NV: torch.Tensor) -> torch.Tensor:
    return logits_NV if hook is None else hook(positions_N, logits_NV)


def _commit_counts(n: int, config: SamplerConfig) -> list[int] | None:
    """Per-step commit counts under low-confidence remasking; None for the threshold strategy."""
    if config.strategy == "threshold":
        return None
    return transfer_schedule(n, min(config.steps_per_block, n))


def denoise_block(x_N: torch.Tensor, lo: int, hi: int, logits_fn: Callable[[torch.Tensor], torch.Tensor],
                  allowed_V: torch.Tensor, config: SamplerConfig, generator: torch.Generator,
                  ) -> torch.Tensor:
    """Fill the block `x_N[lo:hi]` (all `<|mask|>`) over the configured steps; returns the filled copy of `x_N`.

    `logits_fn(x_N) -> [hi - lo, V]` gives the (hooked, guided) logits of the block for the current canvas; it is
    the only thing that differs between the cached sampler, the NAR baseline and the full-recompute reference.
    """
    n = hi - lo
    x_N = x_N.clone()
    block_n = x_N[lo:hi]
    masked_n = torch.ones(n, dtype=torch.bool, device=x_N.device)
    counts = _commit_counts(n, config)
    threshold = config.threshold if counts is None else None
    step = 0
    while bool(masked_n.any()):
        logits_nV = restrict(logits_fn(x_N), allowed_V)
        x0_n, confidence_n = propose(logits_nV, config.audio_temperature, generator)
        chosen_n = choose_commits(confidence_n, masked_n, None if counts is None else counts[step], threshold)
        block_n[chosen_n] = x0_n[chosen_n]
        masked_n &= ~chosen_n
        step += 1
    return x_N


class _Unconditional:
    """The CFG branch: the prompt dropped, everything generated since appended lazily, its own exact cache."""

    def __init__(self, model: PreTrainedModel, spec: TokenSpec, uncond_prompt_ids: Sequence[int]) -> None:
        self.ctx = CachedContext(model, spec, "ttt")
        self.pending: list[int] = list(uncond_prompt_ids)

    def peek(self, span_N: torch.Tensor, n_logits: int) -> torch.Tensor:
        if self.pending:
            self.ctx.extend(self.pending)
            self.pending = []
        return self.ctx.peek(span_N, n_logits)


@dataclass
class _Decoding:
    """The state one generation threads through its steps."""

    spec: TokenSpec
    config: SamplerConfig
    ctx: CachedContext
    classes: TokenClasses
    generator: torch.Generator
    hook: LogitsHook | None
    uncond: _Unconditional | None = None
    script: list[int] = field(default_factory=list)
    """AR decisions still to be taken from a text script rather than from the logits."""

    def choose_text(self, logits_V: torch.Tensor) -> int:
        if self.script and self.script[0] != OPEN_CHUNK_OR_CONTINUE:
            return self.script.pop(0)
        position = torch.tensor([len(self.ctx)], device=logits_V.device)
        logits_V = _hooked(self.hook, position, logits_V[None])[0]
        if self.script:
            return self._open_chunk_or_continue(logits_V)
        c = self.config
        return sample_text(restrict(logits_V, self.classes.text_V), c.text_temperature, c.top_k, c.top_p,
                           self.generator)

    def _open_chunk_or_continue(self, logits_V: torch.Tensor) -> int:
        """The script's one free decision (`model.layout.OPEN_CHUNK_OR_CONTINUE`), greedy between its two options;
        continuing with text means no chunk span follows in this turn, so the later choices go too."""
        self.script.pop(0)
        options = [self.spec.begin_audio_id, self.script[0]]
        choice = options[int(torch.argmax(logits_V[options]))]
        if choice != self.spec.begin_audio_id:
            self.script = [t for t in self.script[1:] if t != OPEN_CHUNK_OR_CONTINUE]
        return choice


#: A span decoder: given the decoding state, the begin marker just chosen and the span's plan, yield the finished
#: `AudioSpan` event and return `(begin marker + span ids, logits of the next text token)` with both committed.
SpanDecoder = Callable[[_Decoding, int, SpanPlan], Generator[Event, None, tuple[list[int], torch.Tensor]]]


def _diffusion_span(d: _Decoding, begin_id: int, plan: SpanPlan
                    ) -> Generator[Event, None, tuple[list[int], torch.Tensor]]:
    """Block-wise diffusion of one span on top of the exact prefix cache (see the module docstring)."""
    allowed_V = d.classes.audio(d.spec, plan.end_id)
    begin_1 = torch.tensor([begin_id], device=d.ctx.ids_L.device)
    span_start = len(d.ctx) + 1
    span_N = begin_1.new_zeros(0)
    while True:
        n = plan.next_block(span_N.numel())
        canvas_N = torch.cat([begin_1, span_N, begin_1.new_full((n,), d.spec.mask_id)])
        positions_n = torch.arange(span_start + span_N.numel(), span_start + span_N.numel() + n,
                                   device=canvas_N.device)

        def block_logits(x_N: torch.Tensor) -> torch.Tensor:
            logits_nV = d.ctx.peek(x_N, n)
            if d.uncond is not None:
                logits_nV = guided(logits_nV, d.uncond.peek(x_N, n), d.config.cfg_scale)
            return _hooked(d.hook, positions_n, logits_nV)

        canvas_N = denoise_block(canvas_N, canvas_N.numel() - n, canvas_N.numel(), block_logits, allowed_V,
                                 d.config, d.generator)
        span_N = canvas_N[1:]
        closed = plan.close(span_N)
        if closed is not None:
            break
    span_N, ended = closed
    codes = (span_N[:-1] - d.spec.audio_start).tolist()
    yield AudioSpan(tuple(codes), plan.kind, ended)
    ids = [begin_id, *span_N.tolist()]
    return ids, d.ctx.extend(ids)


def _ar_span(d: _Decoding, begin_id: int, plan: SpanPlan) -> Generator[Event, None, tuple[list[int], torch.Tensor]]:
    """The AR baseline's span: one token per forward, each committed to the cache at once."""
    allowed_V = d.classes.audio(d.spec, plan.end_id)
    logits_V = d.ctx.extend([begin_id])
    codes: list[int] = []
    ended = False
    while len(codes) < plan.limit:
        position = torch.tensor([len(d.ctx)], device=logits_V.device)
        logits_1V = restrict(_hooked(d.hook, position, logits_V[None]), allowed_V)
        token = int(propose(logits_1V, d.config.audio_temperature, d.generator)[0])
        logits_V = d.ctx.extend([token])
        if token == plan.end_id:
            ended = True
            break
        codes.append(token)
    if not ended:
        logits_V = d.ctx.extend([plan.end_id])
    yield AudioSpan(tuple(c - d.spec.audio_start for c in codes), plan.kind, ended)
    return [begin_id, *codes, plan.end_id], logits_V


def _decode(model: PreTrainedModel, prompt_ids: Sequence[int], spec: TokenSpec, config: SamplerConfig,
            kind: Literal["ttt", "ar"], span_decoder: SpanDecoder, uncond_prompt_ids: Sequence[int] | None,
            logits_hook: LogitsHook | None, text_script: Sequence[int] = ()) -> Iterator[Event]:
    """The AR loop shared by `generate` and `generate_ar`; spans are delegated to `span_decoder`."""
    if len(prompt_ids) == 0:
        raise ValueError("the prompt is empty")
    ctx = CachedContext(model, spec, kind)
    generator = torch.Generator(device=model.device).manual_seed(config.seed)
    d = _Decoding(spec, config, ctx, TokenClasses.build(spec, model.config.vocab_size, model.device), generator,
                  logits_hook, script=list(text_script))
    if uncond_prompt_ids is not None:
        d.uncond = _Unconditional(model, spec, uncond_prompt_ids)
    stops = (spec.im_end_id, spec.pad_id)
    begins = (spec.begin_audio_id, spec.begin_audio_tail_id)
    logits_V = ctx.extend(prompt_ids)
    out: list[int] = []
    while len(out) < config.max_new_tokens:
        token = d.choose_text(logits_V)
        yield TextToken(token)
        if token in stops:
            out.append(token)
            yield Done(tuple(out), "eos")
            return
        if token in begins:
            ids, logits_V = yield from span_decoder(d, token, SpanPlan.for_begin(token, spec, config))
        else:
            ids, logits_V = [token], ctx.extend([token])
        out.extend(ids)
        if d.uncond is not None:
            d.uncond.pending.extend(ids)
    yield Done(tuple(out), "length")


@torch.no_grad()
def generate(model: PreTrainedModel, prompt_ids: Sequence[int], spec: TokenSpec,
             config: SamplerConfig = SamplerConfig(), *, uncond_prompt_ids: Sequence[int] = (),
             logits_hook: LogitsHook | None = None, text_script: Sequence[int] = ()) -> Iterator[Event]:
    """TtT decoding: AR text, block-wise diffusion audio, exact KV cache (module docstring).

    `uncond_prompt_ids`: the unconditional branch's context when `config.cfg_scale > 0` (the prompt dropped).
    `text_script`: ids the AR side takes, in order, instead of choosing (`model.layout.assistant_text_script`:
    text-forced TTS, where only the audio and whether a chunk span opens are the model's); once the script is
    used up, decoding is free again.
    """
    uncond = uncond_prompt_ids if config.cfg_scale > 0 else None
    yield from _decode(model, prompt_ids, spec, config, "ttt", _diffusion_span, uncond, logits_hook, text_script)


@torch.no_grad()
def generate_ar(model: PreTrainedModel, prompt_ids: Sequence[int], spec: TokenSpec,
                config: SamplerConfig = SamplerConfig(), *, logits_hook: LogitsHook | None = None,
                text_script: Sequence[int] = ()) -> Iterator[Event]:
    """The AR baseline: every token, audio included, next-token with a causal mask and a KV cache. `text_script`
    as for `generate`."""
    if config.cfg_scale > 0:
        raise ValueError("classifier-free guidance is defined for diffusion spans only; set cfg_scale=0")
    yield from _decode(model, prompt_ids, spec, config, "ar", _ar_span, None, logits_hook, text_script)


class _EventParser:
    """Turns a finished id stream into events (the NAR baseline decides whole blocks, not single tokens)."""

    def __init__(self, spec: TokenSpec) -> None:
        self.spec = spec
        self.kind: SpanKind | None = None
        self.codes: list[int] = []

    def feed(self, token: int) -> list[Event]:
        s = self.spec
        if self.kind is not None:
            if s.is_audio_code(token):
                self.codes.append(token - s.audio_start)
                return []
            ended = token == (s.end_audio_id if self.kind == "chunk" else s.end_audio_tail_id)
            events: list[Event] = [self.close(ended)]
            return events if ended else events + self.feed(token)
        if token == s.begin_audio_id or token == s.begin_audio_tail_id:
            self.kind, self.codes = ("chunk" if token == s.begin_audio_id else "tail"), []
        return [TextToken(token)]

    def close(self, ended: bool) -> AudioSpan:
        """The open span as an event (`ended=False`: no end marker followed its codes)."""
        if self.kind is None:
            raise ValueError("no audio span is open")
        span = AudioSpan(tuple(self.codes), self.kind, ended)
        self.kind, self.codes = None, []
        return span


@torch.no_grad()
def generate_nar(model: PreTrainedModel, prompt_ids: Sequence[int], spec: TokenSpec,
                 config: SamplerConfig = SamplerConfig(), *, logits_hook: LogitsHook | None = None,
                 ) -> Iterator[Event]:
    """The NAR baseline (LLaDA semi-autoregressive blocks; module docstring). Events are emitted per finished block;
    decoding stops after the block holding the first `<|im_end|>` (everything after it is dropped)."""
    if config.cfg_scale > 0:
        raise ValueError("classifier-free guidance is not implemented for the NAR baseline; set cfg_scale=0")
    if len(prompt_ids) == 0:
        raise ValueError("the prompt is empty")
    device = model.device
    block = config.block_len
    n_blocks = math.ceil(config.max_new_tokens / block)
    P = len(prompt_ids)
    x_L = torch.cat([torch.as_tensor(list(prompt_ids), dtype=torch.long, device=device),
                     torch.full((n_blocks * block,), spec.mask_id, dtype=torch.long, device=device)])
    doc_1L = torch.zeros_like(x_L)[None]
    allowed_V = TokenClasses.build(spec, model.config.vocab_size, device).any_V
    generator = torch.Generator(device=device).manual_seed(config.seed)
    parser = _EventParser(spec)
    out: list[int] = []
    for b in range(n_blocks):
        lo, hi = P + b * block, P + (b + 1) * block
        positions_n = torch.arange(lo, hi, device=device)

        def block_logits(canvas_L: torch.Tensor) -> torch.Tensor:
            logits = model(input_ids=canvas_L[None], doc_ids=doc_1L, mask_kind="nar",
                           logits_to_keep=canvas_L.numel() - lo).logits[0, :block].float()
            return _hooked(logits_hook, positions_n, logits)

        x_L = denoise_block(x_L, lo, hi, block_logits, allowed_V, config, generator)
        for token in x_L[lo:hi].tolist():
            out.append(token)
            yield from parser.feed(token)
            if token in (spec.im_end_id, spec.pad_id):
                yield Done(tuple(out), "eos")
                return
    if parser.kind is not None:
        yield parser.close(False)
    yield Done(tuple(out), "length")
