"""The `base` section of params.yaml: what every stage shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stages.config import load_section


@dataclass(frozen=True)
class BaseParams:
    """`base` section of params.yaml."""

    seed: int = 1234
    """Seed every stage derives its randomness from (stages add their own offsets)."""
    profile: Literal["tiny", "gpu", "full"] = "tiny"
    """Which profile these params describe: tiny (embedded, CPU), gpu (one H100/H200), full (local real weights/data)."""


def load_base(params_path: str | Path) -> BaseParams:
    return load_section(params_path, "base", BaseParams)
