"""One measured answer: run the checkpoint's own decoder on a prompt, stream its audio spans through the codec, time it.

The decoder follows the objective the checkpoint was trained with (its `config.json`): `ttt` -> block-wise
diffusion with the exact KV cache (`model.sampler.generate`), `ar` -> `generate_ar`, `nar` -> `generate_nar`, so
the ablation compares each model under its own inference. Audio is decoded span by span as the sampler emits it
(`model.streaming.stream_pcm`), exactly as `ttt chat` streams it, which is what "time to first audio" measures.

Timing: `total_s` is the wall time of the whole answer; `decode_s` the part spent in the codec, so
`total_s - decode_s` is the model's share (audio tokens per second are computed on that share).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from model.sampler import SamplerConfig, generate, generate_ar, generate_nar
from model.streaming import AudioSpan, Done, Event, PcmChunk, TextToken, stream_pcm
from model.vocab import TokenSpec

DECODERS: dict[str, Callable[..., Iterator[Event]]] = {"ttt": generate, "ar": generate_ar, "nar": generate_nar}
#: Objectives whose decoder can be given the answer's text (`text_script`): those that write text token by token.
SCRIPTABLE = frozenset({"ttt", "ar"})


class Assets(Protocol):
    """What evaluation needs loaded (`flows.chat.load_assets` returns it): model, tokenizer, token ids, codec."""

    model: Any
    tokenizer: Any
    spec: TokenSpec
    codec: Any


@dataclass(frozen=True)
class Answer:
    """The model's answer to one prompt and what it cost."""

    text: str
    codes: np.ndarray = field(repr=False)
    """Every audio code of the answer's spans, in order (raw codebook indices)."""
    pcm: np.ndarray | None = field(repr=False)
    """The decoded speech (None when the answer was not decoded)."""
    spans: int
    generated_tokens: int
    stop: str
    first_audio_s: float | None
    total_s: float
    decode_s: float


def objective_of(model: Any) -> str:
    """The objective the checkpoint was trained with (`ttt`, `ar` or `nar`)."""
    return model.config.get_objective().objective


def answer_budget(answer_tokens: int, prompt_tokens: int, length_factor: float, max_audio_len: int,
                  max_positions: int) -> int:
    """`max_new_tokens` for one item: `length_factor` times the reference answer (plus a little slack), within the
    context. A span in progress may run past `max_new_tokens` by one span, hence the room kept for it."""
    room = max_positions - prompt_tokens - max_audio_len - 2
    if room < 1:
        raise ValueError(f"a {prompt_tokens}-token prompt leaves no room for an answer in {max_positions} positions "
                         f"with max_audio_len {max_audio_len}")
    return max(1, min(math.ceil(length_factor * answer_tokens) + 8, room))


def answer(assets: Assets, prompt_ids: tuple[int, ...], config: SamplerConfig, speak: bool,
           decode_context: int, text_script: Sequence[int] = ()) -> Answer:
    """Generate one answer; decode its audio span by span when `speak`, else only collect its codes.

    `text_script`: the answer's text side, forced (`model.sampler.generate`); only decoders with an AR side take
    one, so the NAR baseline refuses it.
    """
    objective = objective_of(assets.model)
    if text_script and objective not in SCRIPTABLE:
        raise ValueError(f"a text script needs a decoder with an AR side ({sorted(SCRIPTABLE)}), not {objective!r}")
    decoder = DECODERS[objective]
    options = {"text_script": list(text_script)} if text_script else {}
    decode_s = 0.0

    def timed_decode(codes: np.ndarray) -> np.ndarray:
        nonlocal decode_s
        t0 = time.perf_counter()
        pcm = assets.codec.decode(codes)
        decode_s += time.perf_counter() - t0
        return pcm

    start = time.perf_counter()
    events: Iterator[Event | PcmChunk] = decoder(assets.model, list(prompt_ids), assets.spec, config, **options)
    if speak:
        events = stream_pcm(events, timed_decode, decode_context)
    text_ids: list[int] = []
    codes: list[int] = []
    pcm: list[np.ndarray] = []
    spans, first_audio, done = 0, None, None
    for event in events:
        if isinstance(event, TextToken):
            text_ids.append(event.token_id)
        elif isinstance(event, AudioSpan):
            spans += 1
            codes.extend(event.codes)
        elif isinstance(event, PcmChunk):
            pcm.append(event.pcm)
            first_audio = first_audio if first_audio is not None else time.perf_counter() - start
        elif isinstance(event, Done):
            done = event
    total = time.perf_counter() - start
    if done is None:
        raise RuntimeError("the sampler ended without a Done event")
    speech = (np.concatenate(pcm) if pcm else np.zeros(0, np.float32)) if speak else None
    return Answer(text=assets.tokenizer.decode(text_ids, skip_special_tokens=True).strip(),
                  codes=np.asarray(codes, dtype=np.int64), pcm=speech, spans=spans,
                  generated_tokens=len(done.token_ids), stop=done.reason, first_audio_s=first_audio, total_s=total,
                  decode_s=decode_s)
