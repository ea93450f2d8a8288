"""The assistant-turn layout: alignment-free text/audio interleaving (GLM-4-Voice style, DESIGN §1).

An assistant turn alternates `text_chunk` text tokens, `<|begin_of_audio|>`, exactly `audio_chunk` audio tokens,
`<|end_of_audio|>`, ...; the last text chunk is followed by `<|begin_of_audio_tail|>`, all remaining audio
(variable length) and `<|end_of_audio_tail|>`. The pack stage builds training documents with it and the
sampler's tests use it to make realistic rows, so both sides agree on one definition.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.vocab import TokenSpec


def interleave_assistant(text_ids: Sequence[int], audio_ids: Sequence[int], spec: TokenSpec,
                         text_chunk: int = 13, audio_chunk: int = 26) -> list[int]:
    """Interleave an answer's text ids and audio ids (vocabulary ids, not raw codes).

    A full audio chunk is placed after a text chunk only while text remains *and* more than one chunk of audio
    remains; otherwise the rest of the text is written out and every remaining audio token goes to the tail
    span, so the tail is never empty and every chunk span holds exactly `audio_chunk` tokens.
    """
    if text_chunk <= 0 or audio_chunk <= 0:
        raise ValueError(f"chunk sizes must be positive, got {text_chunk}:{audio_chunk}")
    if not audio_ids:
        raise ValueError("an assistant turn needs at least one audio token")
    text, audio = list(text_ids), list(audio_ids)
    out: list[int] = []
    ti = ai = 0
    while True:
        chunk = text[ti:ti + text_chunk]
        out += chunk
        ti += len(chunk)
        text_left = ti < len(text)
        if text_left and len(audio) - ai > audio_chunk:
            out += [spec.begin_audio_id, *audio[ai:ai + audio_chunk], spec.end_audio_id]
            ai += audio_chunk
            continue
        out += text[ti:]
        out += [spec.begin_audio_tail_id, *audio[ai:], spec.end_audio_tail_id]
        return out


#: A text-script entry (`assistant_text_script`): here the AR head itself chooses between `<|begin_of_audio|>` and
#: the script's next text token (the rest of the text, then the tail span, as when the audio ran short).
OPEN_CHUNK_OR_CONTINUE = -1


def assistant_text_script(text_ids: Sequence[int], spec: TokenSpec, text_chunk: int = 13) -> list[int]:
    """The AR decisions of an assistant turn that speaks `text_ids`, in `interleave_assistant`'s layout: each full
    text chunk followed by `OPEN_CHUNK_OR_CONTINUE` while text remains, the last by `<|begin_of_audio_tail|>`.

    A sampler fed this script writes exactly the given text and decides only the audio (text-forced TTS). Whether a
    chunk span follows a full text chunk depends on how much audio is left, which only the speaker knows, so that
    one layout decision stays the model's: once it continues with text, the layout writes the rest of the text
    and then the tail span, and the sampler drops the script's later choices.
    """
    if text_chunk <= 0:
        raise ValueError(f"text_chunk must be positive, got {text_chunk}")
    if not text_ids:
        raise ValueError("a text script needs at least one text token")
    out: list[int] = []
    for start in range(0, len(text_ids), text_chunk):
        out += text_ids[start:start + text_chunk]
        out.append(OPEN_CHUNK_OR_CONTINUE if start + text_chunk < len(text_ids) else spec.begin_audio_tail_id)
    return out
