"""`ObjectiveConfig`: the hybrid AR + masked-diffusion objective and its train-test strategies (DESIGN §1).

Kept apart from `model.config` so the data side (`model.noising`, `model.losses`) imports torch only, not
transformers (whose Qwen2 import costs seconds in every loader process).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

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
    t_min: float = 0.0
    """Floor of the per-document noise level: `t ~ U(t_min, 1)`. 0 is DESIGN §1's uniform draw (the ELBO's). A floor
    trains only high masking ratios: the regime in which the first denoising steps must write a span from its text,
    which masked generative TTS trains more often than uniform (MaskGIT's cosine ratios, MaskGCT); the 1/p weight
    still applies within each draw."""
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
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must lie in [0, 1), got {self.t_min}")
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
