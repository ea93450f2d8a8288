"""The losses against a hand-computed two-document row, plus the zero contributions and reductions."""

from __future__ import annotations

import math

import torch

from model.losses import ttt_loss
from model.noising import TrainBatch, prepare_batch
from model.objective import ObjectiveConfig
from model.testing import random_packed_batch, toy_spec
from model.vocab import ROLE_ASSISTANT, ROLE_PAD, ROLE_PROMPT

S = toy_spec()
V = S.vocab_size
A = S.audio_start
P, R, N = ROLE_PROMPT, ROLE_ASSISTANT, ROLE_PAD

#            0           1  2  3                     4  5      6                    7
LABELS = [S.im_start_id, 1, 5, S.begin_audio_tail_id, A, A + 1, S.end_audio_tail_id, S.im_end_id,
          S.im_start_id, 2, S.begin_audio_tail_id, A + 2, S.end_audio_tail_id, S.pad_id]
#            8           9  10                     11     12                    13
ROLES = [P, P, R, R, R, R, R, R, P, P, R, R, R, N]
DOCS = [0] * 8 + [1] * 5 + [-1]
TEXT_TARGETS = {2, 3, 7, 10}
ELIGIBLE = {4, 5, 6, 11, 12}
NOISED = {4, 6, 11}
P_DOC = {0: 0.5, 1: 0.25}


def toy_batch() -> TrainBatch:
    labels = torch.tensor([LABELS])
    noised = torch.tensor([[i in NOISED for i in range(14)]])
    p = torch.tensor([[P_DOC[d] if i in ELIGIBLE else 1.0 for i, d in enumerate(DOCS)]])
    return TrainBatch(input_ids=torch.where(noised, S.mask_id, labels), labels=labels, doc_ids=torch.tensor([DOCS]),
                      role=torch.tensor([ROLES]), text_targets=torch.tensor([[i in TEXT_TARGETS for i in range(14)]]),
                      eligible=torch.tensor([[i in ELIGIBLE for i in range(14)]]), noised=noised, mask_prob=p,
                      mask_kind="ttt", clean=False)


def test_toy_target_sets_are_what_prepare_batch_derives() -> None:
    cfg = ObjectiveConfig(p_clean=0.0, p_prefix=0.0, p_trunc=0.0)
    made = prepare_batch(torch.tensor([LABELS]), torch.tensor([DOCS]), torch.tensor([ROLES]), S, cfg,
                         torch.Generator().manual_seed(0))
    toy = toy_batch()
    assert torch.equal(made.text_targets, toy.text_targets) and torch.equal(made.eligible, toy.eligible)


def toy_logits() -> torch.Tensor:
    """Zeros, except 2.0 on each text target's id one row earlier and 1.0 on each noised token's id at its row."""
    logits = torch.zeros(1, 14, V)
    for i in TEXT_TARGETS:
        logits[0, i - 1, LABELS[i]] = 2.0
    for i in NOISED:
        logits[0, i, LABELS[i]] = 1.0
    return logits


def test_loss_equals_hand_computed_value() -> None:
    def ce(a: float) -> float:  # one logit a, V-1 zeros
        return math.log(V - 1 + math.exp(a)) - a

    z6 = math.log(V - 2 + math.e + math.e ** 2)   # row 6 carries both a text target (2.0) and a noised token (1.0)
    text = (ce(2) + ce(2) + (z6 - 2) + ce(2)) / 4
    doc0 = (ce(1) + (z6 - 1)) / (0.5 * 3)          # 2 noised of 3 eligible, p = 0.5
    doc1 = ce(1) / (0.25 * 2)                       # 1 noised of 2 eligible, p = 0.25
    audio = (doc0 + doc1) / 2
    parts = ttt_loss(toy_logits(), toy_batch(), lambda_audio=0.5)
    assert math.isclose(float(parts.text), text, rel_tol=1e-6)
    assert math.isclose(float(parts.audio), audio, rel_tol=1e-6)
    assert math.isclose(float(parts.loss), text + 0.5 * audio, rel_tol=1e-6)
    assert (parts.n_text, parts.n_noised, parts.n_eligible, parts.n_audio_docs) == (4, 3, 5, 2)


def test_only_target_predicting_rows_receive_gradient() -> None:
    logits = toy_logits().requires_grad_()
    ttt_loss(logits, toy_batch()).loss.backward()
    rows = {i for i in range(14) if logits.grad[0, i].abs().sum() > 0}
    assert rows == {1, 2, 6, 9} | {4, 6, 11}  # padding (13), prompt-only rows (0, 8) and clean audio contribute 0


def test_audio_loss_is_a_mean_over_documents() -> None:
    one = toy_batch()
    two = TrainBatch(**{f: torch.cat([getattr(one, f)] * 2) for f in
                        ("input_ids", "labels", "doc_ids", "role", "text_targets", "eligible", "noised", "mask_prob")},
                     mask_kind="ttt", clean=False)
    a, b = ttt_loss(toy_logits(), one), ttt_loss(torch.cat([toy_logits()] * 2), two)
    torch.testing.assert_close(a.audio, b.audio)
    torch.testing.assert_close(a.text, b.text)
    assert b.n_audio_docs == 4


def test_banom_clean_and_ar_batches_give_zero_audio_loss_that_backpropagates() -> None:
    rows = random_packed_batch(S, 2, 128, torch.Generator().manual_seed(0), max_text=20, max_audio=40)
    for cfg in (ObjectiveConfig(p_clean=1.0), ObjectiveConfig(objective="ar")):
        batch = prepare_batch(*rows, S, cfg, torch.Generator().manual_seed(0))
        logits = torch.randn(2, 128, V, requires_grad=True)
        parts = ttt_loss(logits, batch)
        assert parts.audio.item() == 0.0 and parts.n_noised == 0 and parts.n_text > 0
        parts.loss.backward()
        assert logits.grad is not None


def test_nar_batch_has_zero_text_loss() -> None:
    rows = random_packed_batch(S, 2, 128, torch.Generator().manual_seed(0), max_text=20, max_audio=40)
    batch = prepare_batch(*rows, S, ObjectiveConfig(objective="nar"), torch.Generator().manual_seed(0))
    parts = ttt_loss(torch.randn(2, 128, V), batch)
    assert float(parts.text) == 0.0 and parts.n_text == 0 and float(parts.audio) > 0
