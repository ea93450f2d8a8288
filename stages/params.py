"""Every params.yaml section and the dataclass that binds it, plus the profile overlays.

`params.yaml` is the active configuration; the repository's copy is the `tiny` profile. `configs/profiles/tiny.yaml`
is that full configuration, and every other `configs/profiles/<name>.yaml` holds only what its profile changes.
`apply_profile` deep-merges an overlay over tiny and writes the result to params.yaml, so `dvc repro` and
`dvc params diff` see an ordinary params file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stages import io
from stages.base import BaseParams
from stages.config import ParamsError, from_mapping, read_yaml
from stages.fetch import FetchParams
from stages.synthesize import SynthesizeParams
from stages.validate import ValidateParams
from stages.tokenizers import TokenizersParams
from stages.tokenize import TokenizeParams
from stages.pack import PackParams
from stages.train import TrainParams
from stages.evaluate import EvaluateParams
from stages.report import ReportParams

SECTIONS: dict[str, type] = {
    "base": BaseParams,
    "fetch": FetchParams,
    "synthesize": SynthesizeParams,
    "validate": ValidateParams,
    "tokenizers": TokenizersParams,
    "tokenize": TokenizeParams,
    "pack": PackParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "report": ReportParams,
}

PROFILE_DIR = Path(__file__).resolve().parent.parent / "configs" / "profiles"


def bind_all(data: dict[str, Any], where: str) -> dict[str, object]:
    """Bind every section of a params mapping; an unknown section is an error like an unknown key."""
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{where}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return {name: from_mapping(cls, data.get(name) or {}, f"{where}:{name}") for name, cls in SECTIONS.items()}


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`, recursing into mappings (lists and scalars are replaced whole)."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def profile_params(name: str) -> dict[str, Any]:
    """The full params mapping of profile `name`: its overlay merged over the tiny profile."""
    base = read_yaml(PROFILE_DIR / "tiny.yaml")
    if name == "tiny":
        return base
    overlay_path = PROFILE_DIR / f"{name}.yaml"
    if not overlay_path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ParamsError(f"unknown profile {name!r}; known: {known}")
    return deep_merge(base, read_yaml(overlay_path))


def apply_profile(name: str, params_path: str | Path) -> dict[str, object]:
    """Write profile `name` (checked by binding every section) to `params_path`."""
    merged = profile_params(name)
    bound = bind_all(merged, f"profile {name}")
    header = "# Written by `ttt profile {0}` from configs/profiles/{0}.yaml (over tiny.yaml); edit those, not this.\n"
    io.write_text(header.format(name) + yaml.safe_dump(merged, sort_keys=False), params_path)
    return bound
