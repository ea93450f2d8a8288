"""The attention masks: the formula against an independent loop oracle, a hand-read example, padding rows, and
FlexAttention's BlockMask agreeing with the dense SDPA mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from model.attention import dense_mask, document_positions, flex_block_mask, segment_ids
from model.testing import random_packed_batch, toy_spec

SPEC = toy_spec()
T, A = 1, SPEC.audio_start  # a text id and the first audio id


def oracle(ids: list[int], doc: list[int], kind: str) -> torch.Tensor:
    """The DESIGN §1 formula, written as plain loops over one row."""
    L = len(ids)
    audio = [bool(SPEC.is_audio(i)) for i in ids]
    seg, n = [], 0
    for a in audio:
        n += not a
        seg.append(n)
    out = torch.zeros(L, L, dtype=torch.bool)
    for q in range(L):
        for k in range(L):
            if doc[q] < 0:
                out[q, k] = q == k
            elif doc[q] == doc[k]:
                if kind == "nar":
                    out[q, k] = True
                elif kind == "ar":
                    out[q, k] = k <= q
                else:
                    out[q, k] = k <= q or (audio[q] and audio[k] and seg[q] == seg[k])
    return out


def hand_row() -> tuple[torch.Tensor, torch.Tensor]:
    s = SPEC
    doc0 = [s.im_start_id, T, s.begin_audio_id, A, A + 1, s.end_audio_id, T, s.begin_audio_tail_id, A + 2, A + 3,
            s.end_audio_tail_id, s.im_end_id]
    doc1 = [s.im_start_id, T, s.begin_audio_id, A + 4, s.end_audio_id]
    ids = torch.tensor([doc0 + doc1 + [s.pad_id, s.pad_id]])
    doc = torch.tensor([[0] * len(doc0) + [1] * len(doc1) + [-1, -1]])
    return ids, doc


def test_hand_example_reads_as_designed() -> None:
    ids, doc = hand_row()
    m = dense_mask(ids, doc, SPEC, "ttt")[0, 0]
    assert m[3, 5] and m[5, 3] and m[4, 3]           # inside the first audio span: bidirectional, end marker included
    assert not m[2, 3]                               # the begin marker is text-class: causal
    assert not m[3, 6] and m[6, 5]                   # text after a span sees it, the span does not see the text
    assert m[8, 10] and m[8, 3] and not m[3, 8]      # causal across spans, bidirectional within the tail span
    assert not m[12:, :12].any() and not m[:12, 12:].any()  # nothing crosses documents
    assert m[17].tolist() == [k == 17 for k in range(19)]   # padding sees only itself
    assert m.any(dim=-1).all()                       # no empty softmax row


@pytest.mark.parametrize("kind", ["ttt", "ar", "nar"])
def test_dense_mask_matches_loop_oracle(kind: str) -> None:
    ids, doc, _ = random_packed_batch(SPEC, 2, 160, torch.Generator().manual_seed(3), max_text=20, max_audio=40)
    m = dense_mask(ids, doc, SPEC, kind)
    assert m.shape == (2, 1, 160, 160) and m.dtype == torch.bool
    for b in range(2):
        assert torch.equal(m[b, 0], oracle(ids[b].tolist(), doc[b].tolist(), kind))


def test_segment_ids_group_consecutive_audio() -> None:
    audio = torch.tensor([[False, True, True, False, False, True]])
    assert segment_ids(audio).tolist() == [[1, 1, 1, 2, 3, 3]]


def test_document_positions_restart_per_document() -> None:
    doc = torch.tensor([[0, 0, 0, 1, 1, -1, -1], [0, 0, 0, 0, 0, 0, 0]])
    assert document_positions(doc).tolist() == [[0, 1, 2, 0, 1, 0, 1], list(range(7))]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("kind", ["ttt", "ar", "nar"])
def test_flex_block_mask_agrees_with_dense_sdpa(kind: str) -> None:
    # Unfused flex_attention runs eagerly on CPU; the compiled model path is exercised in test_modeling.
    ids, doc, _ = random_packed_batch(SPEC, 2, 200, torch.Generator().manual_seed(4), max_text=20, max_audio=60)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 200, 16, generator=g) for _ in range(3))
    block = flex_block_mask(ids, doc, SPEC, kind, block_size=64)
    dense = dense_mask(ids, doc, SPEC, kind)
    torch.testing.assert_close(flex_attention(q, k, v, block_mask=block),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=dense))
