"""Model configuration: `TttConfig` (a Qwen2 config that also carries the token ids and the training objective,
`model.objective.ObjectiveConfig`) and named size presets.

`TttConfig` stores the `TokenSpec` and the `ObjectiveConfig` as plain dicts so they travel inside `config.json`
of every checkpoint: a saved model knows its special ids and which mask it was trained with.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import Qwen2Config

from model.objective import ObjectiveConfig
from model.vocab import TokenSpec

#: Backbone shapes. `tiny` trains on 2 CPU cores in minutes; `gpu` is the Qwen2.5-0.5B shape.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    "gpu": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
}


class TttConfig(Qwen2Config):
    """A Qwen2 configuration plus the resolved token ids and the training objective.

    Deviation from Qwen2Config: two extra serialised fields; everything else is Qwen2's.
    """

    model_type = "ttt_qwen2"

    token_spec: dict | None = None
    """`TokenSpec.to_dict()`; required for packed forwards (the mask is derived from the ids)."""
    objective: dict | None = None
    """`ObjectiveConfig.to_dict()`; None means the defaults."""

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.token_spec is not None:
            spec = TokenSpec.from_dict(self.token_spec)
            if spec.vocab_size > self.vocab_size:
                raise ValueError(f"token spec needs vocab_size >= {spec.vocab_size}, config has {self.vocab_size}")
        self.get_objective()  # validate early

    def get_token_spec(self) -> TokenSpec:
        if self.token_spec is None:
            raise ValueError("this TttConfig carries no token_spec; build it with make_config(..., spec)")
        return TokenSpec.from_dict(self.token_spec)

    def get_objective(self) -> ObjectiveConfig:
        return ObjectiveConfig.from_dict(self.objective or {})


def make_config(preset: str, spec: TokenSpec, objective: ObjectiveConfig | None = None,
                **overrides: Any) -> TttConfig:
    """A `TttConfig` from a named preset, sized to the spec's vocabulary; `overrides` win over the preset."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    kwargs: dict[str, Any] = {**copy.deepcopy(PRESETS[preset]), "vocab_size": spec.vocab_size,
                              "pad_token_id": spec.pad_id, "eos_token_id": spec.im_end_id, "bos_token_id": None,
                              **overrides}
    return TttConfig(token_spec=spec.to_dict(), objective=(objective or ObjectiveConfig()).to_dict(), **kwargs)
