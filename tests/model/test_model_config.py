"""TttConfig and the size presets (named test_model_config to stay distinct from tests/stages/test_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.config import PRESETS, TttConfig, make_config
from model.modeling import build_model
from model.objective import ObjectiveConfig
from model.testing import toy_spec

SPEC = toy_spec()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_makes_a_valid_config(preset: str) -> None:
    cfg = make_config(preset, SPEC)
    assert cfg.vocab_size == SPEC.vocab_size and cfg.get_token_spec() == SPEC
    assert cfg.hidden_size % cfg.num_attention_heads == 0
    assert cfg.num_attention_heads % cfg.num_key_value_heads == 0
    assert (cfg.pad_token_id, cfg.eos_token_id) == (SPEC.pad_id, SPEC.im_end_id)


def test_gpu_preset_is_the_qwen25_05b_shape() -> None:
    cfg = make_config("gpu", SPEC)
    shape = (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads,
             cfg.num_key_value_heads, cfg.tie_word_embeddings)
    assert shape == (896, 4864, 24, 14, 2, True)


def test_tiny_preset_is_small_enough_for_cpu() -> None:
    model = build_model("tiny", SPEC, seed=0)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000


def test_build_model_is_deterministic_given_a_seed() -> None:
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    a, b = build_model("tiny", SPEC, seed=3, **small), build_model("tiny", SPEC, seed=3, **small)
    assert all((pa == pb).all() for pa, pb in zip(a.parameters(), b.parameters()))


def test_config_round_trip_keeps_spec_and_objective(tmp_path: Path) -> None:
    cfg = make_config("tiny", SPEC, ObjectiveConfig(objective="ar", lambda_audio=0.5), num_hidden_layers=2)
    cfg.save_pretrained(tmp_path)
    loaded = TttConfig.from_pretrained(tmp_path)
    assert loaded.get_token_spec() == SPEC
    assert loaded.get_objective() == ObjectiveConfig(objective="ar", lambda_audio=0.5)
    assert loaded.num_hidden_layers == 2


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        make_config("tiny", SPEC, vocab_size=SPEC.vocab_size - 1)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge", SPEC)
    with pytest.raises(ValueError, match="no token_spec"):
        TttConfig().get_token_spec()
