"""Model and objective configuration: `TttConfig` (a Qwen2 config that also carries the token ids and the
training objective), `ObjectiveConfig` (the hybrid AR + diffusion objective and its train-test strategies) and
named size presets.

`TttConfig` stores the `TokenSpec` and the `ObjectiveConfig` as plain dicts so they travel inside `config.json`
of every checkpoint: a saved model knows its special ids and which mask it was trained with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from transformers import Qwen2Config

from model.vocab import TokenSpec

Objective = Literal["ttt", "ar", "nar"]
OBJECTIVES: tuple[str, ...] = ("ttt", "ar", "nar")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The training objective (DESIGN §1). A strategy is switched off by setting its probability to 0.

    BANOM / PPM / SST shape the hybrid objective only; the `ar` and `nar` baselines ignore them.
    """

    objective: Objective = "ttt"
    """`ttt`: AR text + masked-diffusion audio, modality-aware mask; `ar`: every assistant token next-token,
    causal mask; `nar`: every assistant token masked diffusion, bidirectional within the document."""
    lambda_audio: float = 1.0
    """Weight of the audio (diffusion) loss: `L = L_text + lambda_audio * L_audio`."""
    eps: float = 1e-3
    """Floor of the masking probability: `p = (1 - eps) * t + eps`, so the `1/p` weight stays finite."""
    p_clean: float = 0.3
    """BANOM: probability that a micro-batch is left clean and trains the AR loss only."""
    p_prefix: float = 0.3
    """PPM: per-document probability of keeping all audio before a randomly chosen span clean."""
    p_trunc: float = 0.5
    """SST: per-document probability of truncating the tail audio span (and dropping its end marker)."""
    trunc_min_frac: float = 0.3
    """SST: smallest kept fraction of the tail span."""
    trunc_max_frac: float = 0.9
    """SST: largest kept fraction of the tail span."""
    trunc_min_keep: int = 5
    """SST: never keep fewer tail tokens than this."""
    trunc_skip_len: int = 10
    """SST: tail spans of at most this many tokens are never truncated."""

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        for name in ("p_clean", "p_prefix", "p_trunc"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"eps must lie in (0, 1), got {self.eps}")
        if self.lambda_audio < 0:
            raise ValueError(f"lambda_audio must be >= 0, got {self.lambda_audio}")
        if not 0.0 < self.trunc_min_frac <= self.trunc_max_frac <= 1.0:
            raise ValueError(f"need 0 < trunc_min_frac <= trunc_max_frac <= 1, got "
                             f"{self.trunc_min_frac}, {self.trunc_max_frac}")
        if not 1 <= self.trunc_min_keep <= self.trunc_skip_len:
            raise ValueError(f"need 1 <= trunc_min_keep <= trunc_skip_len, got "
                             f"{self.trunc_min_keep}, {self.trunc_skip_len}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ObjectiveConfig":
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown ObjectiveConfig keys: {sorted(unknown)}")
        return cls(**data)


#: Backbone shapes. `tiny` trains on 2 CPU cores in minutes; `gpu` is the Qwen2.5-0.5B shape.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, rope_parameters={"rope_type": "default",
                 "rope_theta": 10000.0}, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "gpu": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, max_position_embeddings=32768, rope_parameters={"rope_type": "default",
                "rope_theta": 1000000.0}, rms_norm_eps=1e-6, tie_word_embeddings=True),
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
    kwargs: dict[str, Any] = {**PRESETS[preset], "vocab_size": spec.vocab_size, "pad_token_id": spec.pad_id,
                              "eos_token_id": spec.im_end_id, "bos_token_id": None, **overrides}
    return TttConfig(token_spec=spec.to_dict(), objective=(objective or ObjectiveConfig()).to_dict(), **kwargs)
