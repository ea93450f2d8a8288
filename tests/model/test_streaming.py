"""Streaming glue: spans become PCM as they arrive (with optional decoder context), text increments never split a
character."""

from __future__ import annotations

import numpy as np
import pytest

from model.streaming import AudioSpan, Done, PcmChunk, TextDetokenizer, TextToken, stream_pcm

PER_CODE = 3


def ramp_decode(codes: np.ndarray) -> np.ndarray:
    """A decoder whose samples reveal what it was given: code c decodes to [c, c + 0.1, c + 0.2]."""
    return (np.repeat(codes.astype(np.float32), PER_CODE) + np.tile([0.0, 0.1, 0.2], len(codes))).astype(np.float32)


def test_each_span_is_decoded_right_after_it_arrives() -> None:
    events = [TextToken(1), AudioSpan((4, 5), "chunk", False), TextToken(2), AudioSpan((), "tail", True),
              AudioSpan((6,), "tail", True), Done((1,), "eos")]
    out = list(stream_pcm(iter(events), ramp_decode))
    kinds = [type(e).__name__ for e in out]
    assert kinds == ["TextToken", "AudioSpan", "PcmChunk", "TextToken", "AudioSpan", "AudioSpan", "PcmChunk", "Done"]
    np.testing.assert_allclose(out[2].pcm, ramp_decode(np.array([4, 5])))
    assert out[2].span is events[1]


def test_decoder_context_keeps_only_the_new_span() -> None:
    calls: list[list[int]] = []

    def decode(codes: np.ndarray) -> np.ndarray:
        calls.append(codes.tolist())
        return ramp_decode(codes)

    spans = [AudioSpan((1, 2, 3), "chunk", False), AudioSpan((7, 8), "tail", True)]
    chunks = [e for e in stream_pcm(spans, decode, context_codes=2) if isinstance(e, PcmChunk)]
    assert calls == [[1, 2, 3], [2, 3, 7, 8]]
    np.testing.assert_allclose(chunks[1].pcm, ramp_decode(np.array([7, 8])))
    assert sum(len(c.pcm) for c in chunks) == PER_CODE * 5


def test_context_needs_a_proportional_decoder() -> None:
    spans = [AudioSpan((1,), "chunk", False), AudioSpan((2,), "tail", True)]
    with pytest.raises(ValueError, match="samples per code"):
        list(stream_pcm(spans, lambda codes: np.zeros(len(codes) * 2 + 1), context_codes=1))


def test_text_detokenizer_holds_back_partial_characters() -> None:
    pieces = {1: b"h", 2: b"\xc3", 3: b"\xa9", 4: b"!"}  # "hé!" with é split across two byte tokens

    def decode(ids: list[int]) -> str:
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")

    detok = TextDetokenizer(decode)
    assert [detok.push(i) for i in (1, 2, 3, 4)] == ["h", "", "é", "!"]
    assert detok.flush() == ""
    dangling = TextDetokenizer(decode)
    dangling.push(2)
    assert dangling.flush() == "\ufffd"
