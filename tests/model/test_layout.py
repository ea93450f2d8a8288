"""The assistant-turn layout (`model.layout`): the text script is exactly the AR side of `interleave_assistant`."""

from __future__ import annotations

import pytest

from model.layout import assistant_text_script, interleave_assistant
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


@pytest.mark.parametrize("n_text,text_chunk", [(1, 3), (3, 3), (7, 3), (9, 4), (13, 13)])
def test_script_is_the_layouts_text_side_when_the_audio_is_long_enough(n_text: int, text_chunk: int) -> None:
    text = list(range(3, 3 + n_text))
    audio = [SPEC.audio_start + i % SPEC.audio_size for i in range(8 * n_text + 24)]  # speech-rate audio
    layout = interleave_assistant(text, audio, SPEC, text_chunk, 8)
    script = assistant_text_script(text, SPEC, text_chunk)
    assert script == ar_decisions(layout)
    assert [t for t in script if t not in (SPEC.begin_audio_id, SPEC.begin_audio_tail_id)] == text
    assert script[-1] == SPEC.begin_audio_tail_id and script.count(SPEC.begin_audio_tail_id) == 1


def test_script_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one text token"):
        assistant_text_script([], SPEC, 3)
    with pytest.raises(ValueError, match="text_chunk"):
        assistant_text_script([3], SPEC, 0)
