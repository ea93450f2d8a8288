"""Training documents in the Qwen chat layout: one function turns chat turns (text and audio codes) into token ids.

A document is rendered exactly as `stages.text_tokenizer.CHAT_TEMPLATE` renders its messages,

    <|im_start|>system\\n{instruction}<|im_end|>\\n
    <|im_start|>user\\n{text | <|begin_of_audio|> codes <|end_of_audio|>}<|im_end|>\\n
    <|im_start|>assistant\\n{text | interleaved text+audio}<|im_end|>\\n

where a spoken-and-written assistant turn uses `model.layout.interleave_assistant` (13 text : 26 audio chunks, then
the variable tail span). Roles per token (`model.vocab`): everything of system and user turns, the
`<|im_start|>assistant\\n` header and the newline after each `<|im_end|>` is ROLE_PROMPT (context, no loss); the
assistant content and its `<|im_end|>` are ROLE_ASSISTANT (what training learns to write and speak).

Text is encoded piece by piece between special tokens, which is how the tokenizer splits a rendered chat string
anyway (special tokens match first), so `decode(document.ids)` equals the chat template's rendering and the ids equal
tokenising that rendering. The instruction texts live here because the tokenizers stage trains the BPE on them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from model.layout import interleave_assistant
from model.vocab import ROLE_ASSISTANT, ROLE_PROMPT, TokenSpec

#: System prompts per task, a few variants each (a document's variant is chosen by a hash of its sample id).
INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "asr": ("Transcribe the speech.", "Write down exactly what the speaker says.",
            "Listen to the audio and write what you hear."),
    "tts": ("Read the user's text aloud.", "Say the following sentence out loud.",
            "Speak the text you are given."),
    "qa": ("Answer the spoken question out loud.", "Listen to the question and answer it in speech.",
           "You are a voice assistant. Answer the question briefly, speaking."),
    "chat": ("You are a helpful voice assistant. Answer every spoken question out loud.",
             "Have a spoken conversation with the user and answer each question in speech.",
             "You are a voice assistant. Reply to each question briefly, speaking."),
    "sound_cls": ("What kind of sound is this? Answer with its class name.", "Name the sound you hear.",
                  "Classify the sound in one word."),
    "sound_caption": ("Describe the sound.", "Write a short caption for this sound.",
                      "What do you hear? Describe it in one sentence."),
}

SpanKind = Literal["user", "chunk", "tail"]


@dataclass(frozen=True)
class ChatTurn:
    """One turn: `codes` (raw codebook indices) make a user turn spoken, an assistant turn spoken-and-written."""

    role: Literal["system", "user", "assistant"]
    text: str = ""
    codes: np.ndarray | None = None


@dataclass(frozen=True)
class AudioSpan:
    """Where the codes of one audio span sit in its document (`start` = first code, after the begin marker)."""

    kind: SpanKind
    start: int
    length: int


@dataclass
class Document:
    """Token ids, per-token roles and the audio spans of one rendered document."""

    ids: list[int] = field(default_factory=list)
    roles: list[int] = field(default_factory=list)
    spans: list[AudioSpan] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def prompt_len(self) -> int:
        """Tokens before the first assistant token (the context every training target is conditioned on)."""
        return self.roles.index(ROLE_ASSISTANT) if ROLE_ASSISTANT in self.roles else len(self.roles)

    @property
    def tail(self) -> tuple[int, int]:
        """(start, length) of the last tail span, the one SST may cut; (-1, 0) when the document has none."""
        tails = [s for s in self.spans if s.kind == "tail"]
        return (tails[-1].start, tails[-1].length) if tails else (-1, 0)


Encode = Callable[[str], list[int]]


class _Writer:
    """Appends pieces (special ids, text, audio spans) with their roles and records span positions."""

    def __init__(self, spec: TokenSpec, encode: Encode) -> None:
        self.spec, self.encode, self.doc = spec, encode, Document()

    def ids(self, ids: Sequence[int], role: int) -> None:
        self.doc.ids.extend(ids)
        self.doc.roles.extend([role] * len(ids))

    def text(self, text: str, role: int) -> None:
        self.ids(self.encode(text), role)

    def audio_ids(self, codes: np.ndarray) -> list[int]:
        codes = np.asarray(codes)
        if codes.ndim != 1 or codes.size == 0:
            raise ValueError(f"an audio span needs a non-empty 1-D code array, got shape {codes.shape}")
        if codes.min() < 0 or codes.max() >= self.spec.audio_size:
            raise ValueError(f"audio codes outside [0, {self.spec.audio_size}): {codes.min()}..{codes.max()}")
        return (codes.astype(np.int64) + self.spec.audio_start).tolist()

    def interleaved(self, text_ids: list[int], audio_ids: list[int], role: int, text_chunk: int,
                    audio_chunk: int) -> None:
        """An interleaved run; spans are recovered from the markers, so the layout stays `model.layout`'s alone."""
        start = len(self.doc.ids)
        body = interleave_assistant(text_ids, audio_ids, self.spec, text_chunk, audio_chunk)
        self.ids(body, role)
        begins = {self.spec.begin_audio_id: "chunk", self.spec.begin_audio_tail_id: "tail"}
        i = 0
        while i < len(body):
            kind = begins.get(body[i])
            if kind is None:
                i += 1
                continue
            j = i + 1
            while self.spec.is_audio_code(body[j]):
                j += 1
            self.doc.spans.append(AudioSpan(kind, start + i + 1, j - i - 1))  # type: ignore[arg-type]
            i = j + 1

    def span(self, kind: SpanKind, begin_id: int, end_id: int, audio_ids: list[int], role: int) -> None:
        """One whole audio span: begin marker, codes, end marker."""
        self.ids([begin_id], role)
        self.doc.spans.append(AudioSpan(kind, len(self.doc.ids), len(audio_ids)))
        self.ids([*audio_ids, end_id], role)

    def open_turn(self, role: str) -> None:
        self.ids([self.spec.im_start_id], ROLE_PROMPT)
        self.text(f"{role}\n", ROLE_PROMPT)

    def close_turn(self, role: int) -> None:
        self.ids([self.spec.im_end_id], role)
        self.text("\n", ROLE_PROMPT)


def render_chat(turns: Sequence[ChatTurn], spec: TokenSpec, encode: Encode, text_chunk: int = 13,
                audio_chunk: int = 26) -> Document:
    """Render chat turns as one document (see the module docstring for the layout and the roles)."""
    w = _Writer(spec, encode)
    for turn in turns:
        if turn.role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown chat role {turn.role!r}")
        content_role = ROLE_ASSISTANT if turn.role == "assistant" else ROLE_PROMPT
        w.open_turn(turn.role)
        if turn.codes is None:
            w.text(turn.text, content_role)
        elif turn.role == "user":
            if turn.text:
                raise ValueError("a spoken user turn carries its audio only; put instructions in a system turn")
            w.span("user", spec.begin_audio_id, spec.end_audio_id, w.audio_ids(turn.codes), ROLE_PROMPT)
        elif turn.role == "assistant":
            w.interleaved(encode(turn.text), w.audio_ids(turn.codes), ROLE_ASSISTANT, text_chunk, audio_chunk)
        else:
            raise ValueError("a system turn cannot carry audio")
        w.close_turn(content_role)
    return w.doc


@dataclass(frozen=True)
class Utterance:
    """One piece of an interleaved document: a text and its speech, and which way round they go."""

    text: str
    codes: np.ndarray
    speak: bool
    """True: text then its speech (TTS direction, the assistant layout); False: speech (one tail span) then text."""


def render_interleaved(pieces: Sequence[Utterance], spec: TokenSpec, encode: Encode, text_chunk: int = 13,
                       audio_chunk: int = 26) -> Document:
    """An interleaved "pretraining" document: one assistant turn alternating text and speech of several utterances.

    Everything after the `<|im_start|>assistant\\n` header trains. Consecutive speaking pieces form one run laid out
    like a spoken answer over their joined texts and concatenated speech: single sentences are mostly shorter than
    one text chunk, so only runs of several give the layout's 13:26 chunk spans enough text to appear. A listening
    piece is its whole speech as one tail span followed by its transcript and a newline.
    """
    if not pieces:
        raise ValueError("an interleaved document needs at least one utterance")
    w = _Writer(spec, encode)
    w.open_turn("assistant")
    for speak, run in itertools.groupby(pieces, key=lambda p: p.speak):
        run = list(run)
        if speak:
            audio = w.audio_ids(np.concatenate([np.asarray(p.codes) for p in run]))
            w.interleaved(encode(" ".join(p.text for p in run)), audio, ROLE_ASSISTANT, text_chunk, audio_chunk)
            continue
        for piece in run:
            w.span("tail", spec.begin_audio_tail_id, spec.end_audio_tail_id, w.audio_ids(piece.codes), ROLE_ASSISTANT)
            w.text(f"{piece.text}\n", ROLE_ASSISTANT)
    w.close_turn(ROLE_ASSISTANT)
    return w.doc
