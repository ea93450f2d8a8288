"""ObjectiveConfig: defaults from DESIGN §1, validation, and the dict round trip checkpoints rely on."""

from __future__ import annotations

import pytest

from model.objective import ObjectiveConfig


def test_defaults_are_the_papers() -> None:
    cfg = ObjectiveConfig()
    assert (cfg.objective, cfg.lambda_audio, cfg.eps, cfg.t_min) == ("ttt", 1.0, 1e-3, 0.0)
    assert (cfg.p_clean, cfg.p_prefix, cfg.p_trunc) == (0.3, 0.3, 0.5)
    assert (cfg.trunc_min_frac, cfg.trunc_max_frac, cfg.trunc_min_keep, cfg.trunc_skip_len) == (0.3, 0.9, 5, 10)


@pytest.mark.parametrize("bad", [dict(objective="diffusion"), dict(p_clean=1.5), dict(p_trunc=-0.1), dict(eps=0.0),
                                 dict(lambda_audio=-1.0), dict(trunc_min_frac=0.95), dict(trunc_min_keep=11),
                                 dict(t_min=1.0), dict(t_min=-0.1)])
def test_invalid_settings_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        ObjectiveConfig(**bad)


def test_dict_round_trip_and_unknown_keys() -> None:
    cfg = ObjectiveConfig(objective="nar", p_prefix=0.0)
    assert ObjectiveConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="p_cleen"):
        ObjectiveConfig.from_dict({"p_cleen": 0.1})
