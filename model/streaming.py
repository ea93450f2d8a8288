"""What the sampler streams, and the glue that turns a stream of completed audio spans into PCM as it goes.

The sampler (`model.sampler`) is a generator of events: `TextToken` per AR token as it is chosen, `AudioSpan` per
audio span the moment its tokens are final (before its KV is even written), and one `Done`. `stream_pcm` decodes
every span at once with an injected `decode(codes) -> pcm` callable, so the first audio plays while the answer is
still being written, and `model/` stays free of codec (`stages/`) imports. `TextDetokenizer` turns token ids into
printable text increments without splitting a multi-byte character.

numpy only: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SpanKind = Literal["chunk", "tail"]
DoneReason = Literal["eos", "length"]


@dataclass(frozen=True)
class TextToken:
    """One token chosen autoregressively (text, a chat marker or a begin-of-audio marker)."""

    token_id: int


@dataclass(frozen=True)
class AudioSpan:
    """A completed audio span: raw codebook indices (0 .. audio_size-1), without markers.

    `kind`: `chunk` (opened by `<|begin_of_audio|>`) or `tail` (`<|begin_of_audio_tail|>`). `ended`: the end marker
    was predicted; False when the span hit its length limit and the end marker was appended by the sampler.
    """

    codes: tuple[int, ...]
    kind: SpanKind
    ended: bool


@dataclass(frozen=True)
class Done:
    """The last event: every generated id (text, markers, audio) in order, and why generation stopped."""

    token_ids: tuple[int, ...]
    reason: DoneReason


@dataclass(frozen=True, eq=False)
class PcmChunk:
    """The audio of one span, decoded (float32 mono PCM at the codec's sample rate)."""

    pcm: np.ndarray = field(repr=False)
    span: AudioSpan


Event = TextToken | AudioSpan | Done
Decode = Callable[[np.ndarray], np.ndarray]


def stream_pcm(events: Iterable[Event], decode: Decode, context_codes: int = 0) -> Iterator[Event | PcmChunk]:
    """Pass every event through and follow each non-empty `AudioSpan` at once by its `PcmChunk`.

    `context_codes` > 0 decodes a span together with the last codes of the previous spans and keeps only the new
    span's samples: a decoder that looks at neighbouring codes (the embedded codec's learned decoder does) then
    joins spans without a seam. It needs a decoder whose output length is proportional to its input (a fixed
    number of samples per code), which is checked.
    """
    if context_codes < 0:
        raise ValueError(f"context_codes must be >= 0, got {context_codes}")
    history: list[int] = []
    for event in events:
        yield event
        if not isinstance(event, AudioSpan) or not event.codes:
            continue
        left = history[len(history) - context_codes:] if context_codes else []
        pcm = np.asarray(decode(np.asarray(left + list(event.codes), dtype=np.int64)))
        if left:
            per_code, rest = divmod(len(pcm), len(left) + len(event.codes))
            if rest:
                raise ValueError(f"decoder gave {len(pcm)} samples for {len(left) + len(event.codes)} codes; "
                                 "context_codes needs a fixed number of samples per code")
            pcm = pcm[len(left) * per_code:]
        history.extend(event.codes)
        yield PcmChunk(pcm, event)


class TextDetokenizer:
    """Token ids in, printable text increments out (for printing an answer while it is generated).

    Byte-level BPE tokens can end inside a multi-byte UTF-8 character; such an increment decodes to U+FFFD and is
    held back until the character completes. `decode(ids) -> str` should skip special tokens.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._emitted = 0

    def push(self, token_id: int) -> str:
        """Add one id; return the text that became printable (possibly empty)."""
        self._ids.append(token_id)
        text = self._decode(self._ids)
        if text.endswith("\ufffd"):
            return ""
        new, self._emitted = text[self._emitted:], len(text)
        return new

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        text = self._decode(self._ids)
        new, self._emitted = text[self._emitted:], len(text)
        return new
