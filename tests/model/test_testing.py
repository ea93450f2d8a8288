"""The packed-batch helper produces rows shaped like the pack stage's: contiguous documents, prompt then
assistant roles, the assistant layout, tail padding, and determinism."""

from __future__ import annotations

import pytest
import torch

from model.testing import random_packed_batch, toy_spec
from model.vocab import ROLE_ASSISTANT, ROLE_PAD, ROLE_PROMPT

SPEC = toy_spec()


def test_rows_are_well_formed_packed_documents() -> None:
    ids, doc, role = random_packed_batch(SPEC, 3, 300, torch.Generator().manual_seed(0))
    assert ids.shape == doc.shape == role.shape == (3, 300)
    for b in range(3):
        real = doc[b] >= 0
        n = int(real.sum())
        assert real[:n].all() and not real[n:].any()                       # padding only at the tail
        assert (ids[b, n:] == SPEC.pad_id).all() and (role[b, n:] == ROLE_PAD).all()
        assert (doc[b, 1:n] - doc[b, :n - 1]).clamp(min=0).le(1).all()    # documents 0, 1, 2, ... in order
        assert (doc[b, 1:n] >= doc[b, :n - 1]).all()
        for d in range(int(doc[b].max()) + 1):
            r = role[b, doc[b] == d].tolist()
            t = ids[b, doc[b] == d].tolist()
            k = r.index(ROLE_ASSISTANT)
            assert set(r[:k]) == {ROLE_PROMPT} and set(r[k:]) == {ROLE_ASSISTANT}
            assert t[0] == SPEC.im_start_id and t[-2:] == [SPEC.end_audio_tail_id, SPEC.im_end_id]
            assert SPEC.begin_audio_tail_id in t[k:]


def test_same_generator_same_rows_and_too_short_rows_fail() -> None:
    a = random_packed_batch(SPEC, 2, 200, torch.Generator().manual_seed(1))
    b = random_packed_batch(SPEC, 2, 200, torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="seq_len"):
        random_packed_batch(SPEC, 1, 20, torch.Generator().manual_seed(1))
