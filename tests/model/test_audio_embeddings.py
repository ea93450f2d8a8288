"""`model.audio_embeddings`: audio-code rows start at the codec's code vectors, up to rotation and scale."""

from __future__ import annotations

import pytest
import torch

from model.audio_embeddings import code_vector_embeddings, init_audio_embeddings
from model.modeling import build_model
from model.testing import toy_spec

SPEC = toy_spec(text_vocab=64, audio_size=32)
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1)


def vectors(k: int = 32, d: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed)) * 3 + 5


def test_rows_keep_the_code_vectors_distances_up_to_one_scale() -> None:
    v = vectors()
    rows = code_vector_embeddings(v, hidden=64, target_rms=0.5, generator=torch.Generator().manual_seed(1))
    assert rows.shape == (32, 64)
    assert float(rows.pow(2).sum(1).mean().sqrt()) == pytest.approx(0.5, rel=1e-5)
    ratio = torch.cdist(rows.double(), rows.double()) / torch.cdist(v.double(), v.double()).clamp(min=1e-12)
    off_diagonal = ratio[~torch.eye(32, dtype=torch.bool)]
    assert float(off_diagonal.std() / off_diagonal.mean()) < 1e-5  # one scale for every pair


def test_a_wider_code_vector_keeps_its_leading_principal_components() -> None:
    # 3 informative directions among 40, hidden size 8: the projection must keep the big directions.
    g = torch.Generator().manual_seed(2)
    v = torch.randn(32, 3, generator=g) @ torch.randn(3, 40, generator=g) * 10 + 0.01 * torch.randn(32, 40, generator=g)
    rows = code_vector_embeddings(v, hidden=8, target_rms=1.0, generator=torch.Generator().manual_seed(0))
    ratio = torch.pdist(rows.double()) / torch.pdist(v.double())
    assert float(ratio.std() / ratio.mean()) < 1e-3


def test_init_changes_only_the_audio_rows_at_the_init_scale_and_is_seeded() -> None:
    model = build_model("tiny", SPEC, seed=0, **SMALL)
    before = model.get_input_embeddings().weight.detach().clone()
    init_audio_embeddings(model, SPEC, vectors(), seed=3)
    after = model.get_input_embeddings().weight.detach()
    audio = slice(SPEC.audio_start, SPEC.audio_start + SPEC.audio_size)
    torch.testing.assert_close(after[: SPEC.audio_start], before[: SPEC.audio_start], rtol=0, atol=0)
    assert not torch.allclose(after[audio], before[audio])
    rms = lambda t: float(t.pow(2).sum(1).mean().sqrt())  # noqa: E731
    assert rms(after[audio]) == pytest.approx(rms(before[audio]), rel=1e-5)
    # tied embeddings: the output head predicts audio codes with the same rows
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    again = build_model("tiny", SPEC, seed=0, **SMALL)
    init_audio_embeddings(again, SPEC, vectors(), seed=3)
    torch.testing.assert_close(again.get_input_embeddings().weight, after, rtol=0, atol=0)


def test_wrong_codebook_size_and_degenerate_vectors_are_refused() -> None:
    model = build_model("tiny", SPEC, seed=0, **SMALL)
    with pytest.raises(ValueError, match="31 code vectors for a vocabulary of 32"):
        init_audio_embeddings(model, SPEC, vectors(k=31), seed=0)
    with pytest.raises(ValueError, match="identical"):
        init_audio_embeddings(model, SPEC, torch.ones(32, 4), seed=0)
