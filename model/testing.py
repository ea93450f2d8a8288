"""Realistic random packed rows for tests of the model, the training loop and the sampler.

`toy_spec` lays out a small vocabulary (text ids first, then the special tokens, then the audio codes) and
`random_packed_batch` packs random chat documents built with the real assistant layout (`model.layout`) into
fixed-length rows with doc ids and roles, exactly as the pack stage hands them to training.
"""

from __future__ import annotations

import torch

from model.layout import interleave_assistant
from model.vocab import ROLE_ASSISTANT, ROLE_PAD, ROLE_PROMPT, SPECIAL_TOKENS, TokenSpec


def toy_spec(text_vocab: int = 64, audio_size: int = 32) -> TokenSpec:
    """Text ids `0..text_vocab-1`, then the special tokens in `SPECIAL_TOKENS` order, then the audio codes."""
    s = text_vocab
    n_special = len(SPECIAL_TOKENS)
    return TokenSpec(pad_id=s, im_start_id=s + 1, im_end_id=s + 2, begin_audio_id=s + 3, end_audio_id=s + 4,
                     begin_audio_tail_id=s + 5, end_audio_tail_id=s + 6, mask_id=s + 7, audio_start=s + n_special,
                     audio_size=audio_size, vocab_size=s + n_special + audio_size)


def _text_candidates(spec: TokenSpec) -> torch.Tensor:
    ids = torch.arange(spec.vocab_size)
    specials = torch.tensor([spec.pad_id, spec.im_start_id, spec.im_end_id, spec.begin_audio_id, spec.end_audio_id,
                             spec.begin_audio_tail_id, spec.end_audio_tail_id, spec.mask_id])
    return ids[~spec.is_audio_code(ids) & ~torch.isin(ids, specials)]


def random_document(spec: TokenSpec, generator: torch.Generator, max_text: int = 40, max_audio: int = 80,
                    user_audio_prob: float = 0.5, text_chunk: int = 13, audio_chunk: int = 26,
                    ) -> tuple[list[int], list[int]]:
    """One chat document (ids, roles): a prompt turn (text, maybe one user audio span) and an assistant turn."""
    text_ids = _text_candidates(spec)

    def rint(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (), generator=generator))

    def text(n: int) -> list[int]:
        return text_ids[torch.randint(len(text_ids), (n,), generator=generator)].tolist()

    def audio(n: int) -> list[int]:
        return (spec.audio_start + torch.randint(spec.audio_size, (n,), generator=generator)).tolist()

    prompt = [spec.im_start_id, *text(rint(2, 8))]
    if float(torch.rand((), generator=generator)) < user_audio_prob:
        prompt += [spec.begin_audio_id, *audio(rint(4, 30)), spec.end_audio_id]
    prompt += [spec.im_end_id, spec.im_start_id, *text(1)]
    answer = interleave_assistant(text(rint(3, max_text)), audio(rint(6, max_audio)), spec, text_chunk, audio_chunk)
    answer.append(spec.im_end_id)
    return prompt + answer, [ROLE_PROMPT] * len(prompt) + [ROLE_ASSISTANT] * len(answer)


def random_packed_batch(spec: TokenSpec, batch_size: int, seq_len: int, generator: torch.Generator,
                        max_text: int = 40, max_audio: int = 80, **doc_kwargs: float | int,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(input_ids, doc_ids, role)`, each LongTensor [batch_size, seq_len]: documents packed greedily, tail padded.

    A document that does not fit the rest of a row closes that row (and is dropped), as a simple packer would.
    """
    input_ids = torch.full((batch_size, seq_len), spec.pad_id, dtype=torch.long)
    doc_ids = torch.full((batch_size, seq_len), -1, dtype=torch.long)
    role = torch.full((batch_size, seq_len), ROLE_PAD, dtype=torch.long)
    for b in range(batch_size):
        pos, d = 0, 0
        while True:
            ids, roles = random_document(spec, generator, max_text, max_audio, **doc_kwargs)  # type: ignore[arg-type]
            if pos + len(ids) > seq_len:
                if d == 0:
                    raise ValueError(f"seq_len {seq_len} is shorter than a {len(ids)}-token document; "
                                     "raise seq_len or lower max_text / max_audio")
                break
            input_ids[b, pos:pos + len(ids)] = torch.tensor(ids)
            role[b, pos:pos + len(ids)] = torch.tensor(roles)
            doc_ids[b, pos:pos + len(ids)] = d
            pos, d = pos + len(ids), d + 1
    return input_ids, doc_ids, role
