"""The shared vocabulary: special tokens, audio codes and the text/audio token classes.

Every id is *text-class* or *audio-class* (DESIGN §1). Audio-class = the audio codebook ids, the mask id and
the two end-of-audio ids; everything else (text, chat markers, begin-of-audio markers) is text-class. The
begin markers are emitted by the autoregressive head, the end markers are predicted by diffusion.

Ids are never literals: they are resolved from a tokenizer (`TokenSpec.from_tokenizer`) or from the JSON a
tokenizer stage writes beside it (`TokenSpec.from_json`), and handed around as one frozen `TokenSpec`.

Per-token *roles* describe where a token sits in a chat document; they drive loss masks and noising:
`ROLE_PAD` (padding, never counted), `ROLE_PROMPT` (system/user turns incl. user audio: context only,
never noised, no loss) and `ROLE_ASSISTANT` (assistant turns: text gets the AR loss, audio the NAR loss).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|endoftext|>"
BEGIN_OF_AUDIO = "<|begin_of_audio|>"
END_OF_AUDIO = "<|end_of_audio|>"
BEGIN_OF_AUDIO_TAIL = "<|begin_of_audio_tail|>"
END_OF_AUDIO_TAIL = "<|end_of_audio_tail|>"
MASK = "<|mask|>"

#: Special tokens in the order a tokenizer stage adds them (before the audio codes).
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD,
    IM_START,
    IM_END,
    BEGIN_OF_AUDIO,
    END_OF_AUDIO,
    BEGIN_OF_AUDIO_TAIL,
    END_OF_AUDIO_TAIL,
    MASK,
)

ROLE_PAD = 0
ROLE_PROMPT = 1
ROLE_ASSISTANT = 2


def audio_token(code: int) -> str:
    """The vocabulary string of audio code `code` (codes are contiguous ids in the vocabulary)."""
    return f"<|a_{code}|>"


class _TokenizerLike(Protocol):
    def get_vocab(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class TokenSpec:
    """Resolved ids of every special token plus the contiguous audio-code range.

    `is_audio` works on numpy arrays and torch tensors alike (only comparison and bitwise operators).
    """

    pad_id: int
    im_start_id: int
    im_end_id: int
    begin_audio_id: int
    end_audio_id: int
    begin_audio_tail_id: int
    end_audio_tail_id: int
    mask_id: int
    audio_start: int
    audio_size: int
    vocab_size: int

    def __post_init__(self) -> None:
        if self.audio_size <= 0:
            raise ValueError(f"audio_size must be positive, got {self.audio_size}")
        if self.audio_start + self.audio_size > self.vocab_size:
            raise ValueError("audio codes run past the vocabulary")
        specials = [self.pad_id, self.im_start_id, self.im_end_id, self.begin_audio_id, self.end_audio_id,
                    self.begin_audio_tail_id, self.end_audio_tail_id, self.mask_id]
        if len(set(specials)) != len(specials):
            raise ValueError(f"special token ids collide: {specials}")
        if any(self.audio_start <= s < self.audio_end for s in specials):
            raise ValueError("a special token id lies inside the audio-code range")

    @property
    def audio_end(self) -> int:
        """One past the last audio-code id."""
        return self.audio_start + self.audio_size

    @property
    def end_ids(self) -> tuple[int, int]:
        """The two audio-class end markers (chunk end, tail end)."""
        return (self.end_audio_id, self.end_audio_tail_id)

    def audio_id(self, code: int) -> int:
        """Vocabulary id of audio code `code`."""
        if not 0 <= code < self.audio_size:
            raise ValueError(f"audio code {code} outside [0, {self.audio_size})")
        return self.audio_start + code

    def is_audio_code(self, ids: Any) -> Any:
        """Elementwise: is the id an audio codebook id (not mask, not end marker)?"""
        return (ids >= self.audio_start) & (ids < self.audio_end)

    def is_audio(self, ids: Any) -> Any:
        """Elementwise audio-class test: audio codes, the mask id and both end-of-audio ids."""
        return (self.is_audio_code(ids) | (ids == self.mask_id) | (ids == self.end_audio_id)
                | (ids == self.end_audio_tail_id))

    # --- persistence -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenSpec":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown TokenSpec keys: {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in data.items()})

    @classmethod
    def from_json(cls, path: str | Path) -> "TokenSpec":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_tokenizer(cls, tokenizer: _TokenizerLike, audio_size: int, vocab_size: int | None = None) -> "TokenSpec":
        """Resolve every id by name; fail clearly if a token is missing or the audio codes are not contiguous."""
        names = list(SPECIAL_TOKENS) + [audio_token(0), audio_token(audio_size - 1)]
        vocab = tokenizer.get_vocab()  # not convert_tokens_to_ids: it maps a missing token to unk silently
        missing = [n for n in names if n not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks the tokens {missing}; run the tokenizers stage to add them")
        ids = [int(vocab[n]) for n in names]
        first, last = ids[-2], ids[-1]
        if last - first != audio_size - 1:
            raise ValueError(f"audio tokens are not contiguous: {audio_token(0)}={first}, "
                             f"{audio_token(audio_size - 1)}={last}, expected {audio_size} codes")
        if vocab_size is None:
            vocab_size = len(tokenizer)  # type: ignore[arg-type]
        return cls(pad_id=ids[0], im_start_id=ids[1], im_end_id=ids[2], begin_audio_id=ids[3],
                   end_audio_id=ids[4], begin_audio_tail_id=ids[5], end_audio_tail_id=ids[6], mask_id=ids[7],
                   audio_start=first, audio_size=audio_size, vocab_size=int(vocab_size))
