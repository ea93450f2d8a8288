"""Batch preparation: eligibility, per-document masking probability, BANOM, PPM, SST and the two baselines."""

from __future__ import annotations

import math

import pytest
import torch

from model.attention import segment_ids
from model.layout import interleave_assistant
from model.noising import TrainBatch, prepare_batch, sst_keep_length
from model.objective import ObjectiveConfig
from model.testing import random_packed_batch, toy_spec
from model.vocab import ROLE_ASSISTANT, ROLE_PAD, ROLE_PROMPT

SPEC = toy_spec()
NO_STRATEGIES = ObjectiveConfig(p_clean=0.0, p_prefix=0.0, p_trunc=0.0)


def batch(seed: int = 0, rows: int = 4, length: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return random_packed_batch(SPEC, rows, length, torch.Generator().manual_seed(seed), user_audio_prob=1.0)


def prep(rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor], cfg: ObjectiveConfig, seed: int = 0) -> TrainBatch:
    return prepare_batch(*rows, SPEC, cfg, torch.Generator().manual_seed(seed))


def chat(n_text: int, n_audio: int) -> tuple[list[int], list[int]]:
    """A document whose assistant turn has `n_text` text and `n_audio` audio tokens (user audio in the prompt)."""
    s = SPEC
    prompt = [s.im_start_id, 1, s.begin_audio_id, s.audio_start, s.audio_start + 1, s.end_audio_id, s.im_end_id,
              s.im_start_id, 2]
    answer = interleave_assistant(list(range(3, 3 + n_text)), [s.audio_start + i % s.audio_size
                                                              for i in range(n_audio)], s) + [s.im_end_id]
    return prompt + answer, [ROLE_PROMPT] * len(prompt) + [ROLE_ASSISTANT] * len(answer)


def pack(docs: list[tuple[list[int], list[int]]], pad: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, doc, role = [], [], []
    for d, (i, r) in enumerate(docs):
        ids += i
        role += r
        doc += [d] * len(i)
    ids += [SPEC.pad_id] * pad
    doc += [-1] * pad
    role += [ROLE_PAD] * pad
    return torch.tensor([ids]), torch.tensor([doc]), torch.tensor([role])


def test_eligible_tokens_are_assistant_audio_and_only_they_are_noised() -> None:
    rows = batch()
    ids, doc, role = rows
    out = prep(rows, NO_STRATEGIES)
    assistant_audio = (role == ROLE_ASSISTANT) & SPEC.is_audio(ids) & (doc >= 0)
    assert torch.equal(out.eligible, assistant_audio)
    assert out.noised.any() and not (out.noised & ~out.eligible).any()
    assert torch.equal(out.input_ids == SPEC.mask_id, out.noised)
    assert torch.equal(out.labels, ids) and torch.equal(out.input_ids[~out.noised], ids[~out.noised])
    prompt_audio = (role == ROLE_PROMPT) & SPEC.is_audio(ids)
    assert prompt_audio.any() and not out.noised[prompt_audio].any()
    ends = (ids == SPEC.end_audio_id) | (ids == SPEC.end_audio_tail_id)
    assert out.eligible[ends & (role == ROLE_ASSISTANT)].all()  # end markers are diffusion targets


def test_masking_probability_is_one_draw_per_document() -> None:
    rows = batch(rows=8, length=512)
    out = prep(rows, NO_STRATEGIES)
    deviations, ps = [], []
    for b in range(8):
        for d in range(int(rows[1][b].max()) + 1):
            sel = (rows[1][b] == d) & out.eligible[b]
            p = out.mask_prob[b, sel]
            assert torch.all(p == p[0]) and NO_STRATEGIES.eps <= float(p[0]) <= 1.0
            ps.append(float(p[0]))
            deviations.append(abs(float(out.noised[b, sel].float().mean()) - ps[-1]))
    assert len(set(ps)) == len(ps)                      # documents draw independently
    assert sum(deviations) / len(deviations) < 0.1      # each document is masked at its own rate p
    assert torch.all(out.mask_prob[~out.eligible] == 1.0)


def test_a_noise_floor_maps_the_same_draw_into_t_min_to_1() -> None:
    rows = batch(rows=8, length=512)
    uniform = prep(rows, NO_STRATEGIES)
    floored = prep(rows, ObjectiveConfig(p_clean=0.0, p_prefix=0.0, p_trunc=0.0, t_min=0.7))
    eps, sel = NO_STRATEGIES.eps, uniform.eligible
    assert torch.equal(floored.eligible, sel)
    t = (uniform.mask_prob[sel] - eps) / (1 - eps)                   # each document's t ~ U(0, 1)
    want = (1 - eps) * (0.7 + 0.3 * t) + eps                         # the same draw, moved into U(0.7, 1)
    torch.testing.assert_close(floored.mask_prob[sel], want)
    assert float(floored.mask_prob[sel].min()) >= 0.7
    assert float(floored.noised.sum()) > 1.5 * float(uniform.noised.sum())  # ~0.85 of the tokens masked, not ~0.5


def test_same_generator_state_gives_same_batch() -> None:
    rows = batch()
    a, b, c = prep(rows, ObjectiveConfig(), 5), prep(rows, ObjectiveConfig(), 5), prep(rows, ObjectiveConfig(), 6)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("input_ids", "labels", "doc_ids", "noised"))
    assert not torch.equal(a.input_ids, c.input_ids)


def test_shard_dtypes_give_the_same_batch() -> None:
    rows = batch()
    narrow = (rows[0].to(torch.int32), rows[1].to(torch.int32), rows[2].to(torch.int8))  # as the pack stage stores
    a, b = prep(rows, ObjectiveConfig(p_clean=0.0), 2), prep(narrow, ObjectiveConfig(p_clean=0.0), 2)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("input_ids", "labels", "doc_ids", "role", "noised"))
    assert b.input_ids.dtype == torch.long


def test_inputs_are_not_modified() -> None:
    rows = batch()
    copies = tuple(t.clone() for t in rows)
    prep(rows, ObjectiveConfig(p_clean=0.0, p_prefix=1.0, p_trunc=1.0))
    assert all(torch.equal(a, b) for a, b in zip(rows, copies))


def test_banom_clean_batch_has_no_noise_and_no_truncation() -> None:
    rows = batch()
    out = prep(rows, ObjectiveConfig(p_clean=1.0, p_trunc=1.0, p_prefix=1.0))
    assert out.clean and out.mask_kind == "ttt"
    assert not (out.input_ids == SPEC.mask_id).any() and not out.noised.any() and not out.eligible.any()
    assert torch.equal(out.input_ids, rows[0]) and torch.equal(out.doc_ids, rows[1])
    assert out.text_targets.any()
    draws = [prep(rows, ObjectiveConfig(p_clean=0.3), seed).clean for seed in range(40)]
    assert 0 < sum(draws) < 40


def test_text_targets_are_assistant_text_class_tokens() -> None:
    rows = batch()
    ids, doc, role = rows
    out = prep(rows, NO_STRATEGIES)
    t = out.text_targets
    assert not SPEC.is_audio(out.labels[t]).any() and (role[t] == ROLE_ASSISTANT).all()
    assert not t[:, 0].any()
    expected = (role == ROLE_ASSISTANT) & ~SPEC.is_audio(ids)
    assert torch.equal(t, expected)  # every assistant turn follows its prompt header in the same document
    for marker in (SPEC.begin_audio_id, SPEC.begin_audio_tail_id, SPEC.im_end_id):
        assert t[(ids == marker) & (role == ROLE_ASSISTANT)].all()


def test_ppm_keeps_every_eligible_token_before_the_chosen_span_clean() -> None:
    rows = batch(rows=6, length=512)
    ids, doc, role = rows
    audio = SPEC.is_audio(ids)
    assistant_audio = (role == ROLE_ASSISTANT) & audio
    seg = segment_ids(audio)
    prefixes = []
    for seed in range(3):
        out = prep(rows, ObjectiveConfig(p_clean=0.0, p_prefix=1.0, p_trunc=0.0), seed)
        assert not (out.noised & ~out.eligible).any()
        for b in range(6):
            for d in range(int(doc[b].max()) + 1):
                cand = torch.nonzero((doc[b] == d) & assistant_audio[b]).flatten()
                elig = out.eligible[b, cand]
                first = int(torch.nonzero(elig).flatten()[0])  # the chosen span's first token
                assert not elig[:first].any() and elig[first:].all()
                assert first == 0 or seg[b, cand[first]] != seg[b, cand[first - 1]]  # starts at a span boundary
                prefixes.append(first)
    assert min(prefixes) == 0 and max(prefixes) > 0


def tail_of(ids: list[int]) -> tuple[int, int]:
    start = ids.index(SPEC.begin_audio_tail_id) + 1
    return start, ids.index(SPEC.end_audio_tail_id)


def test_sst_truncates_the_tail_within_bounds_and_drops_the_end_marker() -> None:
    docs = [chat(5, 20), chat(5, 8), chat(30, 61)]  # tails of 20, 8 (too short) and 61 - 26 * 1 = 35 tokens
    rows = pack(docs)
    ids0, doc0, _ = rows
    keeps = set()
    for seed in range(30):
        out = prep(rows, ObjectiveConfig(p_clean=0.0, p_prefix=0.0, p_trunc=1.0), seed)
        assert out.input_ids.shape == ids0.shape
        offset = 0
        for d, (ids, _) in enumerate(docs):
            start, end = tail_of(ids)
            n = end - start
            got = out.labels[0, offset:offset + len(ids)]
            kept_doc = out.doc_ids[0, offset:offset + len(ids)]
            if n <= 10:
                assert got.tolist() == ids and (kept_doc == d).all()
            else:
                keep = int((kept_doc == d).sum()) - start
                assert max(5, math.ceil(0.3 * n)) <= keep <= math.floor(0.9 * n)
                assert got[:start + keep].tolist() == ids[:start + keep]
                assert (got[start + keep:] == SPEC.pad_id).all() and (kept_doc[start + keep:] == -1).all()
                assert (out.role[0, offset + start + keep:offset + len(ids)] == ROLE_PAD).all()
                assert SPEC.end_audio_tail_id not in got.tolist() and SPEC.im_end_id not in got[start:].tolist()
                assert not out.eligible[0, offset + start + keep:offset + len(ids)].any()
                keeps.add((d, keep))
            offset += len(ids)
        assert (out.doc_ids[0, offset:] == -1).all()
    assert len(keeps) > 10  # the cut point varies


@pytest.mark.parametrize("n", [1, 10, 11, 12, 17, 40, 200])
def test_sst_keep_length_bounds(n: int) -> None:
    cfg = ObjectiveConfig()
    keeps = [sst_keep_length(n, u, cfg) for u in [i / 1000 for i in range(1000)] + [1 - 1e-9]]
    if n <= 10:
        assert set(keeps) == {None}
        return
    lo, hi = max(5, math.ceil(0.3 * n)), math.floor(0.9 * n)
    assert set(keeps) == set(range(lo, hi + 1))  # every length in [30 %, 90 %] (>= 5) is reachable, nothing else


def test_ar_baseline_predicts_every_assistant_token_without_noise() -> None:
    rows = batch()
    ids, doc, role = rows
    out = prep(rows, ObjectiveConfig(objective="ar"))
    assert out.mask_kind == "ar" and not out.clean
    assert torch.equal(out.input_ids, ids) and not out.noised.any() and not out.eligible.any()
    assert torch.equal(out.text_targets, (role == ROLE_ASSISTANT))
    assert SPEC.is_audio(out.labels[out.text_targets]).any()


def test_nar_baseline_masks_every_assistant_token() -> None:
    rows = batch()
    ids, doc, role = rows
    out = prep(rows, ObjectiveConfig(objective="nar", p_trunc=1.0))
    assert out.mask_kind == "nar" and not out.text_targets.any()
    assert torch.equal(out.eligible, role == ROLE_ASSISTANT) and torch.equal(out.labels, ids)
    assert (~SPEC.is_audio(ids) & out.noised).any()  # text is diffused too
    assert torch.equal(out.input_ids == SPEC.mask_id, out.noised)
