"""Tests for stages/documents.py: the chat layout, the roles, the assistant interleaving and the span metadata."""

from __future__ import annotations

import numpy as np
import pytest

from model.layout import interleave_assistant
from model.vocab import ROLE_ASSISTANT, ROLE_PROMPT, TokenSpec, audio_token
from stages.documents import INSTRUCTIONS, ChatTurn, Utterance, render_chat, render_interleaved
from stages.text_tokenizer import load_tokenizer, train_text_tokenizer

AUDIO = 64
TEXT = ("the capital of france is paris . what is the capital of spain ? madrid is the capital of spain . "
        "seven plus five is twelve . a dog barks twice . the bell rings once .")


@pytest.fixture(scope="module")
def tok_spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    texts = [TEXT] * 30 + [v for variants in INSTRUCTIONS.values() for v in variants]
    train_text_tokenizer(texts, 500, AUDIO, out)
    return load_tokenizer(out)


@pytest.fixture(scope="module")
def encode(tok_spec):
    backend = tok_spec[0].backend_tokenizer
    return lambda text: backend.encode(text, add_special_tokens=False).ids


def codes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, AUDIO, n)


def span_text(c: np.ndarray, begin: str = "<|begin_of_audio|>", end: str = "<|end_of_audio|>") -> str:
    return begin + "".join(audio_token(int(x)) for x in c) + end


def test_asr_document_is_the_chat_template_rendering_with_prompt_roles(tok_spec, encode):
    tok, spec = tok_spec
    audio = codes(40)
    doc = render_chat([ChatTurn("system", INSTRUCTIONS["asr"][0]), ChatTurn("user", "", audio),
                       ChatTurn("assistant", "the capital of france is paris.")], spec, encode)
    messages = [{"role": "system", "content": INSTRUCTIONS["asr"][0]},
                {"role": "user", "content": span_text(audio)},
                {"role": "assistant", "content": "the capital of france is paris."}]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert tok.decode(doc.ids) == rendered
    assert doc.ids == tok(rendered, add_special_tokens=False)["input_ids"]
    # roles: everything up to and including "<|im_start|>assistant\n" is prompt; the answer and its <|im_end|>
    # are assistant; the trailing newline is prompt again
    header = [spec.im_start_id, *encode("assistant\n")]
    assert doc.ids[doc.prompt_len - len(header):doc.prompt_len] == header
    assert set(doc.roles[:doc.prompt_len]) == {ROLE_PROMPT}
    answer = doc.ids[doc.prompt_len:-1]
    assert answer == encode("the capital of france is paris.") + [spec.im_end_id]
    assert doc.roles[doc.prompt_len:-1] == [ROLE_ASSISTANT] * len(answer)
    assert doc.ids[-1:] == encode("\n") and doc.roles[-1] == ROLE_PROMPT
    # the user audio span: one span, prompt-side, begin marker text-class, codes and end marker audio-class
    (span,) = doc.spans
    assert (span.kind, span.length) == ("user", 40)
    ids = np.array(doc.ids)
    assert ids[span.start - 1] == spec.begin_audio_id and ids[span.start + span.length] == spec.end_audio_id
    assert (ids[span.start:span.start + span.length] - spec.audio_start).tolist() == audio.tolist()
    assert doc.tail == (-1, 0)


def chunks_of(ids: list[int], spec: TokenSpec) -> list[tuple[str, int]]:
    """The assistant content as runs: ('text', n), ('span', n), ('tail', n)."""
    runs, i = [], 0
    while i < len(ids):
        if ids[i] in (spec.begin_audio_id, spec.begin_audio_tail_id):
            end = spec.end_audio_id if ids[i] == spec.begin_audio_id else spec.end_audio_tail_id
            j = ids.index(end, i)
            runs.append(("span" if end == spec.end_audio_id else "tail", j - i - 1))
            i = j + 1
        else:
            j = i
            while j < len(ids) and ids[j] not in (spec.begin_audio_id, spec.begin_audio_tail_id, spec.im_end_id):
                j += 1
            runs.append(("text", j - i))
            i = j if j > i else i + 1
    return runs


@pytest.mark.parametrize("n_audio", [10, 26, 27, 80, 200])
def test_spoken_answer_uses_13_text_26_audio_chunks_then_the_tail(tok_spec, encode, n_audio):
    tok, spec = tok_spec
    text = " ".join(["the capital of france is paris . seven plus five is twelve . the bell rings once ."] * 3)
    text_ids = encode(text)
    assert len(text_ids) > 26, "the answer must span several text chunks for this test to mean anything"
    doc = render_chat([ChatTurn("system", INSTRUCTIONS["qa"][0]), ChatTurn("user", "", codes(30, 1)),
                       ChatTurn("assistant", text, codes(n_audio, 2))], spec, encode)
    content = doc.ids[doc.prompt_len:]
    assert content[-2:] == [spec.im_end_id, *encode("\n")]
    runs = chunks_of(content[:-2], spec)
    n_spans = sum(1 for kind, _ in runs if kind == "span")
    expected_spans = min((len(text_ids) - 1) // 13, max(0, (n_audio - 1) // 26))
    assert n_spans == expected_spans
    assert runs[:2 * n_spans] == [("text", 13), ("span", 26)] * n_spans
    assert runs[2 * n_spans:] == [("text", len(text_ids) - 13 * n_spans), ("tail", n_audio - 26 * n_spans)]
    # text ids keep their order across chunks; audio codes too
    ids = np.array(content)
    assert [i for i in content if not spec.is_audio(i) and i not in (spec.begin_audio_id, spec.begin_audio_tail_id,
                                                                       spec.im_end_id)][:-1] == text_ids
    # token classes: begin markers text-class, end markers audio-class
    assert not spec.is_audio(ids[ids == spec.begin_audio_id]).any()
    assert not spec.is_audio(ids[ids == spec.begin_audio_tail_id]).any()
    assert spec.is_audio(ids[(ids == spec.end_audio_id) | (ids == spec.end_audio_tail_id)]).all()
    assert (ids == spec.end_audio_tail_id).sum() == 1
    # span metadata agrees with the ids
    assistant_spans = [s for s in doc.spans if s.kind != "user"]
    assert [s.kind for s in assistant_spans] == ["chunk"] * n_spans + ["tail"]
    full = np.array(doc.ids)
    for s in assistant_spans:
        assert spec.is_audio_code(full[s.start:s.start + s.length]).all()
        assert not spec.is_audio_code(full[s.start - 1]) and not spec.is_audio_code(full[s.start + s.length])
    assert doc.tail == (assistant_spans[-1].start, n_audio - 26 * n_spans)
    assert set(doc.roles[doc.prompt_len:-1]) == {ROLE_ASSISTANT}


def test_chunk_sizes_are_parameters(tok_spec, encode):
    _, spec = tok_spec
    text = "the capital of france is paris . seven plus five is twelve ."
    doc = render_chat([ChatTurn("user", text), ChatTurn("assistant", text, codes(50))], spec, encode,
                      text_chunk=5, audio_chunk=8)
    runs = chunks_of(doc.ids[doc.prompt_len:-2], spec)
    assert runs[:4] == [("text", 5), ("span", 8), ("text", 5), ("span", 8)]


def test_multi_turn_chat_trains_every_assistant_turn_and_no_user_turn(tok_spec, encode):
    tok, spec = tok_spec
    turns = [ChatTurn("system", INSTRUCTIONS["chat"][1])]
    for k in range(3):
        turns += [ChatTurn("user", "", codes(20, k)), ChatTurn("assistant", "madrid is the capital of spain .",
                                                                codes(35, 10 + k))]
    doc = render_chat(turns, spec, encode)
    ids, roles = np.array(doc.ids), np.array(doc.roles)
    assert (ids == spec.im_start_id).sum() == 7
    assert [s.kind for s in doc.spans].count("user") == 3 and [s.kind for s in doc.spans].count("tail") == 3
    for s in doc.spans:
        expected = ROLE_PROMPT if s.kind == "user" else ROLE_ASSISTANT
        assert (roles[s.start - 1:s.start + s.length + 1] == expected).all()
    assert (roles[ids == spec.im_end_id] == [ROLE_PROMPT, ROLE_PROMPT, ROLE_ASSISTANT, ROLE_PROMPT, ROLE_ASSISTANT,
                                             ROLE_PROMPT, ROLE_ASSISTANT]).all()
    assert doc.tail == (doc.spans[-1].start, 35)


def test_interleaved_document_is_one_trained_assistant_turn(tok_spec, encode):
    """Consecutive speaking pieces share one interleaved run; a listening piece is a tail span then its text."""
    tok, spec = tok_spec
    a, b, c, d = codes(30, 1), codes(25, 2), codes(12, 3), codes(20, 4)
    pieces = [Utterance("the bell rings once .", a, speak=True), Utterance("seven plus five is twelve .", b, speak=True),
              Utterance("a dog barks twice .", c, speak=False), Utterance("madrid is the capital .", d, speak=True)]
    doc = render_interleaved(pieces, spec, encode, text_chunk=4, audio_chunk=8)

    def vocab(x: np.ndarray) -> list[int]:
        return (x + spec.audio_start).tolist()

    header = [spec.im_start_id, *encode("assistant\n")]
    expected = (header
                + interleave_assistant(encode("the bell rings once . seven plus five is twelve ."),
                                       vocab(np.concatenate([a, b])), spec, 4, 8)
                + [spec.begin_audio_tail_id, *vocab(c), spec.end_audio_tail_id, *encode("a dog barks twice .\n")]
                + interleave_assistant(encode("madrid is the capital ."), vocab(d), spec, 4, 8)
                + [spec.im_end_id, *encode("\n")])
    assert doc.ids == expected
    assert doc.prompt_len == len(header)
    assert set(doc.roles[len(header):-1]) == {ROLE_ASSISTANT} and doc.roles[-1] == ROLE_PROMPT
    kinds = [s.kind for s in doc.spans]
    assert "chunk" in kinds and kinds.count("tail") == 3
    spans = np.concatenate([np.array(doc.ids[s.start:s.start + s.length]) for s in doc.spans]) - spec.audio_start
    assert spans.tolist() == np.concatenate([a, b, c, d]).tolist(), "every code once, in utterance order"
    assert doc.tail == (doc.spans[-1].start, doc.spans[-1].length)
    assert tok.decode(doc.ids).startswith("<|im_start|>assistant\nthe bell")


def test_invalid_turns_are_refused(tok_spec, encode):
    _, spec = tok_spec
    with pytest.raises(ValueError, match="audio only"):
        render_chat([ChatTurn("user", "spoken and written", codes(5))], spec, encode)
    with pytest.raises(ValueError, match="outside"):
        render_chat([ChatTurn("user", "", np.array([0, AUDIO]))], spec, encode)
    with pytest.raises(ValueError, match="non-empty"):
        render_chat([ChatTurn("assistant", "x", np.zeros(0, dtype=np.int64))], spec, encode)
    with pytest.raises(ValueError, match="system turn"):
        render_chat([ChatTurn("system", "", codes(3))], spec, encode)
    with pytest.raises(ValueError, match="at least one"):
        render_interleaved([], spec, encode)
