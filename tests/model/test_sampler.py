"""The sampler (`model.sampler`, `model.sampling`): exact KV caching, parity with the full-recompute reference,
span closing rules, guidance, streaming order, and the AR / NAR baselines.

A tiny random model would never emit a begin-of-audio marker, so `forcing_hook` scripts the answer's layout: text,
a chunk span, text, a tail span whose end marker sits in its second block, text, `<|im_end|>`; the markers and end
tokens are banned everywhere else, so every other decision (text tokens, every audio code, the order in which
codes are committed) is the model's own. Its weights are drawn wide (`initializer_range` 0.5) so that different
contexts give different argmaxes: with the default 0.02 every audio position picks the same code and a parity test
could not tell a wrong context from a right one. Spans are short (6-code chunks, blocks of 8) to keep it fast.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmarks.reference_sampler import reference_generate
from model.layout import assistant_text_script
from model.modeling import TttForCausalLM, build_model
from model.sampler import SamplerConfig, SpanPlan, forcing_hook, generate, generate_ar, generate_nar
from model.sampling.context import CachedContext
from model.sampling.logits import TokenClasses, choose_commits, guided, propose, sample_text, transfer_schedule
from model.streaming import AudioSpan, Done, Event, PcmChunk, TextToken, stream_pcm
from model.testing import toy_spec

SPEC = toy_spec()
A = SPEC.audio_start
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             initializer_range=0.5)
PROMPT = [SPEC.im_start_id, 1, 2, SPEC.begin_audio_id, A, A + 1, A + 2, SPEC.end_audio_id, SPEC.im_end_id,
          SPEC.im_start_id, 3]
P = len(PROMPT)
UNCOND = [SPEC.im_start_id, 3]
#: Markers only where the script puts them (the model would otherwise pick them by chance).
BANNED = [SPEC.pad_id, SPEC.im_end_id, SPEC.begin_audio_id, SPEC.begin_audio_tail_id, SPEC.end_audio_id,
          SPEC.end_audio_tail_id]
CHUNK = 6
CHUNK_AT = P + 2           # <|begin_of_audio|>; its 6 codes follow, then the appended <|end_of_audio|> at P + 9
TAIL_AT = P + 12           # <|begin_of_audio_tail|>; codes from P + 13
TAIL_END_AT = P + 13 + 10  # <|end_of_audio_tail|> as the 11th tail token: in the second block of 8
IM_END_AT = P + 28
BASE = SamplerConfig(max_new_tokens=60, chunk_len=CHUNK, block_len=8, steps_per_block=4)


def script(end_tail: bool = True, im_end: bool = True) -> dict[int, int]:
    forced = {CHUNK_AT: SPEC.begin_audio_id, TAIL_AT: SPEC.begin_audio_tail_id}
    if end_tail:
        forced[TAIL_END_AT] = SPEC.end_audio_tail_id
    if im_end:
        forced[IM_END_AT] = SPEC.im_end_id
    return forced


HOOK = forcing_hook(script(), BANNED)


@pytest.fixture(scope="module")
def model() -> TttForCausalLM:
    return build_model("tiny", SPEC, seed=0, **SMALL).eval()


def spans(events: list[Event]) -> list[AudioSpan]:
    return [e for e in events if isinstance(e, AudioSpan)]


def done(events: list[Event]) -> Done:
    assert isinstance(events[-1], Done)
    return events[-1]


# --- parity with the full-recompute reference --------------------------------------------------------------------
@pytest.mark.parametrize("config", [
    BASE,
    replace(BASE, steps_per_block=8),
    replace(BASE, strategy="threshold", threshold=0.3),
    replace(BASE, cfg_scale=2.0),
    replace(BASE, text_temperature=1.0, top_k=20, top_p=0.9, audio_temperature=1.0, seed=3),
], ids=["greedy", "one-per-step", "threshold", "cfg", "sampled"])
def test_cached_sampler_chooses_the_reference_tokens(model: TttForCausalLM, config: SamplerConfig) -> None:
    ours = list(generate(model, PROMPT, SPEC, config, uncond_prompt_ids=UNCOND, logits_hook=HOOK))
    reference = list(reference_generate(model, PROMPT, SPEC, config, uncond_prompt_ids=UNCOND, logits_hook=HOOK))
    assert ours == reference
    assert [(s.kind, len(s.codes)) for s in spans(ours)] == [("chunk", CHUNK), ("tail", 10)]
    assert done(ours).reason == "eos"


def test_guidance_changes_audio_and_scale_zero_is_no_guidance(model: TttForCausalLM) -> None:
    base = list(generate(model, PROMPT, SPEC, BASE, logits_hook=HOOK))
    zero = list(generate(model, PROMPT, SPEC, replace(BASE, cfg_scale=0.0),
                         uncond_prompt_ids=UNCOND, logits_hook=HOOK))
    strong = list(generate(model, PROMPT, SPEC, replace(BASE, cfg_scale=3.0),
                           uncond_prompt_ids=UNCOND, logits_hook=HOOK))
    assert zero == base
    assert [s.codes for s in spans(strong)] != [s.codes for s in spans(base)]  # the branch has an effect
    cond, un = torch.randn(4, 10), torch.randn(4, 10)
    torch.testing.assert_close(guided(cond, un, 0.0), cond)
    torch.testing.assert_close(guided(cond, un, 1.0), un + 2 * (cond - un))


# --- span rules ----------------------------------------------------------------------------------------------------
def test_end_marker_closes_the_span_and_nothing_after_it_is_kept(model: TttForCausalLM) -> None:
    events = list(generate(model, PROMPT, SPEC, BASE, logits_hook=HOOK))
    ids = list(done(events).token_ids)
    tail = spans(events)[1]
    assert tail.kind == "tail" and tail.ended and len(tail.codes) == TAIL_END_AT - TAIL_AT - 1
    begin = ids.index(SPEC.begin_audio_tail_id)
    end = ids.index(SPEC.end_audio_tail_id)
    assert end - begin - 1 == len(tail.codes)
    assert all(SPEC.is_audio_code(t) for t in ids[begin + 1:end])
    # the block ran to P + 28; its positions after the end marker were dropped and AR text resumed right after it
    assert not any(SPEC.is_audio(t) for t in ids[end + 1:])
    assert ids[IM_END_AT - P] == SPEC.im_end_id and len(ids) == IM_END_AT - P + 1


def test_span_limits_append_the_end_marker(model: TttForCausalLM) -> None:
    config = replace(BASE, max_audio_len=20)
    hook = forcing_hook(script(end_tail=False, im_end=False), BANNED)
    events = list(generate(model, PROMPT, SPEC, config, logits_hook=hook))
    chunk, tail = spans(events)[:2]
    assert (len(chunk.codes), chunk.ended) == (CHUNK, False)
    assert (len(tail.codes), tail.ended) == (20, False)  # blocks of 8, 8, then 5 positions, cut to 20 codes
    ids = list(done(events).token_ids)
    begin = ids.index(SPEC.begin_audio_tail_id)
    assert all(SPEC.is_audio_code(t) for t in ids[begin + 1:begin + 21]) and ids[begin + 21] == SPEC.end_audio_tail_id
    assert ids[CHUNK_AT - P + CHUNK + 1] == SPEC.end_audio_id


def test_max_new_tokens_stops_generation(model: TttForCausalLM) -> None:
    events = list(generate(model, PROMPT, SPEC, replace(BASE, max_new_tokens=10), logits_hook=HOOK))
    assert done(events).reason == "length" and len(done(events).token_ids) == 10


def test_span_plan_blocks_and_closing() -> None:
    plan = SpanPlan.for_begin(SPEC.begin_audio_tail_id, SPEC, SamplerConfig(block_len=16, max_audio_len=40))
    assert [plan.next_block(n) for n in (0, 16, 32)] == [16, 16, 9]
    codes = torch.full((41,), A)
    span, ended = plan.close(codes)
    assert span.tolist() == [A] * 40 + [SPEC.end_audio_tail_id] and not ended
    assert plan.close(torch.full((16,), A)) is None
    with_end = torch.tensor([A, SPEC.end_audio_tail_id, A + 1, SPEC.end_audio_tail_id])
    assert plan.close(with_end)[0].tolist() == [A, SPEC.end_audio_tail_id]
    with pytest.raises(ValueError, match="begin-of-audio"):
        SpanPlan.for_begin(SPEC.im_end_id, SPEC, SamplerConfig())


# --- exact KV cache -------------------------------------------------------------------------------------------------
def test_cache_after_a_span_equals_a_fresh_full_forward(model: TttForCausalLM) -> None:
    ctx = CachedContext(model, SPEC, "ttt")
    ctx.extend(PROMPT)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in ctx.cache.layers]
    span = [SPEC.begin_audio_tail_id, A + 3, A + 4, A + 5, SPEC.end_audio_tail_id]
    peeked = ctx.peek(torch.tensor(span[:1] + [SPEC.mask_id] * 4), 4)
    assert len(ctx) == P and all(torch.equal(layer.keys, k) and torch.equal(layer.values, v)
                                 for layer, (k, v) in zip(ctx.cache.layers, before))
    after_span = ctx.extend(span)
    last = ctx.extend([5])
    ids = torch.tensor([PROMPT + span + [5]])
    with torch.no_grad():
        full = model(input_ids=ids, doc_ids=torch.zeros_like(ids), use_cache=True)
        masked = torch.tensor([PROMPT + span[:1] + [SPEC.mask_id] * 4])
        full_masked = model(input_ids=masked, doc_ids=torch.zeros_like(masked)).logits[0, -4:]
    # Same maths, different query lengths: the CPU kernels block the float32 sums differently (and by thread count),
    # which moves logits by up to ~5e-5 on some CPUs; a wrong mask or a stale cache moves them by O(1).
    close = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(peeked, full_masked, **close)
    torch.testing.assert_close(after_span, full.logits[0, -2], **close)
    torch.testing.assert_close(last, full.logits[0, -1], **close)
    for ours, fresh in zip(ctx.cache.layers, full.past_key_values.layers, strict=True):
        torch.testing.assert_close(ours.keys, fresh.keys, **close)
        torch.testing.assert_close(ours.values, fresh.values, **close)


def test_cache_refuses_what_would_make_it_stale(model: TttForCausalLM) -> None:
    ctx = CachedContext(model, SPEC, "ttt")
    ctx.extend([SPEC.im_start_id, SPEC.begin_audio_id, A])
    with pytest.raises(ValueError, match="stale"):
        ctx.extend([A + 1])
    with pytest.raises(ValueError, match="no exact prefix cache"):
        CachedContext(model, SPEC, "nar")


# --- streaming ------------------------------------------------------------------------------------------------------
def test_audio_streams_before_the_answer_ends(model: TttForCausalLM) -> None:
    decoded: list[int] = []

    def decode(codes):  # a stand-in codec: 4 samples per code
        decoded.append(len(codes))
        return torch.arange(4 * len(codes), dtype=torch.float32).numpy()

    events = list(stream_pcm(generate(model, PROMPT, SPEC, BASE, logits_hook=HOOK),
                             decode))
    first_pcm = next(i for i, e in enumerate(events) if isinstance(e, PcmChunk))
    first_span = next(i for i, e in enumerate(events) if isinstance(e, AudioSpan))
    last_text = max(i for i, e in enumerate(events) if isinstance(e, TextToken))
    assert first_span < first_pcm < last_text
    assert first_pcm == first_span + 1 and len(events[first_pcm].pcm) == 4 * CHUNK
    assert decoded == [CHUNK, 10]


@pytest.mark.parametrize("opens_chunk", [True, False])
def test_text_script_writes_the_given_text_and_leaves_the_audio_to_the_model(model: TttForCausalLM,
                                                                              opens_chunk: bool) -> None:
    text = [5, 6, 7, 8, 9, 10, 11]
    script = assistant_text_script(text, SPEC, 3)  # 5 6 7 <choice> 8 9 10 <choice> 11 <boa_tail>
    # the model's choice after 5 6 7 (P + 3): a chunk span (forced here), or text (<boa> is banned) and then no
    # chunk at the second choice either, as the layout has it when the audio runs short of the text
    chunk = [SPEC.begin_audio_id] if opens_chunk else []
    tail_from = P + len(text) + 1 + (1 + CHUNK + 1 if opens_chunk else 0)
    forced = {tail_from + 10: SPEC.end_audio_tail_id, tail_from + 11: SPEC.im_end_id}
    stop = forcing_hook({**forced, P + 3: SPEC.begin_audio_id} if opens_chunk else forced, BANNED)
    for decode in (generate, generate_ar):
        events = list(decode(model, PROMPT, SPEC, BASE, logits_hook=stop, text_script=script))
        written = [e.token_id for e in events if isinstance(e, TextToken)]
        assert written == [5, 6, 7, *chunk, 8, 9, 10, 11, SPEC.begin_audio_tail_id, SPEC.im_end_id]
        assert [(s.kind, len(s.codes)) for s in spans(events)] == [("chunk", CHUNK)] * opens_chunk + [("tail", 10)]
        free = list(decode(model, PROMPT, SPEC, BASE, logits_hook=HOOK))
        assert [e.token_id for e in free if isinstance(e, TextToken)][:3] != text[:3]


# --- baselines ------------------------------------------------------------------------------------------------------
def test_ar_baseline_is_greedy_next_token_under_the_causal_mask(model: TttForCausalLM) -> None:
    events = list(generate_ar(model, PROMPT, SPEC, BASE, logits_hook=HOOK))
    ids = list(done(events).token_ids)
    assert [(s.kind, len(s.codes), s.ended) for s in spans(events)] == [("chunk", CHUNK, False), ("tail", 10, True)]
    # every token the model chose is the argmax of one causal forward over the result (appended end markers aside)
    x = torch.tensor([PROMPT + ids])
    with torch.no_grad():
        logits = model(input_ids=x, doc_ids=torch.zeros_like(x), mask_kind="ar").logits[0, P - 1:-1]
    classes = TokenClasses.build(SPEC, model.config.vocab_size, "cpu")
    span_end = None
    for t, (token, row) in enumerate(zip(ids, HOOK(torch.arange(P, P + len(ids)), logits), strict=True)):
        if token == SPEC.begin_audio_id:
            span_end = SPEC.end_audio_id
        elif token == SPEC.begin_audio_tail_id:
            span_end = SPEC.end_audio_tail_id
        allowed = classes.text_V if not SPEC.is_audio(token) else classes.audio(SPEC, span_end)
        if token == SPEC.end_audio_id:  # appended after the chunk's codes, not chosen
            continue
        assert int(torch.argmax(row.masked_fill(~allowed, float("-inf")))) == token, f"position {P + t}"


def test_nar_baseline_stops_after_im_end(model: TttForCausalLM) -> None:
    hook = forcing_hook({P + 20: SPEC.im_end_id}, [SPEC.im_end_id, SPEC.pad_id])
    events = list(generate_nar(model, PROMPT, SPEC, SamplerConfig(max_new_tokens=64, block_len=8), logits_hook=hook))
    ids = list(done(events).token_ids)
    assert done(events).reason == "eos" and len(ids) == 21 and ids[-1] == SPEC.im_end_id
    assert SPEC.mask_id not in ids
    text = [e.token_id for e in events if isinstance(e, TextToken)]
    assert len(text) + sum(len(s.codes) + s.ended for s in spans(events)) == len(ids)


# --- decision rules -------------------------------------------------------------------------------------------------
def test_transfer_schedule_is_even() -> None:
    assert transfer_schedule(26, 8) == [4, 4, 3, 3, 3, 3, 3, 3]
    assert transfer_schedule(5, 5) == [1] * 5
    with pytest.raises(ValueError):
        transfer_schedule(4, 5)


def test_commit_choice_by_count_and_threshold() -> None:
    confidence = torch.tensor([0.9, 0.2, 0.8, 0.95])
    masked = torch.tensor([True, True, True, False])
    assert choose_commits(confidence, masked, 2, None).tolist() == [True, False, True, False]
    assert choose_commits(confidence, masked, None, 0.85).tolist() == [True, False, False, False]
    assert choose_commits(confidence, masked, None, 0.99).tolist() == [True, False, False, False]  # at least one


def test_token_classes_and_sampling_respect_filters() -> None:
    classes = TokenClasses.build(SPEC, SPEC.vocab_size + 24, "cpu")
    ids = torch.arange(SPEC.vocab_size + 24)
    assert not classes.text_V[SPEC.mask_id] and not classes.text_V[A] and classes.text_V[SPEC.begin_audio_id]
    assert classes.chunk_V[SPEC.end_audio_id] and not classes.chunk_V[SPEC.end_audio_tail_id]
    assert not classes.tail_V[SPEC.mask_id] and not classes.any_V[ids >= SPEC.vocab_size].any()
    g = torch.Generator().manual_seed(0)
    logits = torch.linspace(0, 3, 50)
    picks = {sample_text(logits, 1.0, 5, 1.0, g) for _ in range(200)}
    assert picks <= set(range(45, 50)) and len(picks) > 1
    peaked = torch.full((50,), -10.0)
    peaked[7], peaked[8] = 5.0, 4.0
    assert {sample_text(peaked, 1.0, 0, 0.5, g) for _ in range(50)} == {7}
    x0, confidence = propose(torch.stack([logits, peaked]), 0.0, g)
    assert x0.tolist() == [49, 7] and confidence.dtype == torch.float64


def test_config_rejects_nonsense() -> None:
    for bad in (dict(block_len=0), dict(strategy="random"), dict(top_p=0.0), dict(cfg_scale=-1.0)):
        with pytest.raises(ValueError):
            SamplerConfig(**bad)
