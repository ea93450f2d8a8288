"""The assistant-turn layout (`model.layout`): the text script, its chunk choices resolved as the audio allows, is
exactly the AR side of `interleave_assistant`."""

from __future__ import annotations

import pytest

from model.layout import OPEN_CHUNK_OR_CONTINUE, assistant_text_script, interleave_assistant
from model.testing import toy_spec

SPEC = toy_spec()


def ar_decisions(layout: list[int]) -> list[int]:
    """The ids a sampler chooses autoregressively: everything outside audio spans, up to the last begin marker."""
    out, in_span = [], False
    for token in layout:
        if token in (SPEC.begin_audio_id, SPEC.begin_audio_tail_id):
            out.append(token)
            in_span = True
        elif token in (SPEC.end_audio_id, SPEC.end_audio_tail_id):
            in_span = False
        elif not in_span:
            out.append(token)
    return out


def resolve(script: list[int], chunks: int) -> list[int]:
    """The decisions a sampler takes from `script` when it opens the first `chunks` chunk spans it may open."""
    out, opened, wrote_on = [], 0, False
    for token in script:
        if token != OPEN_CHUNK_OR_CONTINUE:
            out.append(token)
        elif opened < chunks and not wrote_on:
            out.append(SPEC.begin_audio_id)
            opened += 1
        else:
            wrote_on = True  # text chosen once: the layout opens no later chunk
    return out


@pytest.mark.parametrize("n_text,text_chunk", [(1, 3), (3, 3), (7, 3), (9, 4), (13, 13)])
@pytest.mark.parametrize("codes_per_text", [8, 3, 1])
def test_script_resolves_to_the_layouts_text_side(n_text: int, text_chunk: int, codes_per_text: int) -> None:
    text = list(range(3, 3 + n_text))
    audio = [SPEC.audio_start + i % SPEC.audio_size for i in range(codes_per_text * n_text + 3)]
    layout = interleave_assistant(text, audio, SPEC, text_chunk, 8)
    script = assistant_text_script(text, SPEC, text_chunk)
    chunks = layout.count(SPEC.begin_audio_id)
    assert resolve(script, chunks) == ar_decisions(layout)
    assert script.count(OPEN_CHUNK_OR_CONTINUE) == (n_text - 1) // text_chunk, "one choice per full chunk but the last"
    assert [t for t in script if t not in (OPEN_CHUNK_OR_CONTINUE, SPEC.begin_audio_tail_id)] == text
    assert script[-1] == SPEC.begin_audio_tail_id and script.count(SPEC.begin_audio_tail_id) == 1


def test_script_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one text token"):
        assistant_text_script([], SPEC, 3)
    with pytest.raises(ValueError, match="text_chunk"):
        assistant_text_script([3], SPEC, 0)
