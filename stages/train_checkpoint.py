"""Training checkpoints: written atomically, found automatically, loaded without unpickling.

A checkpoint is one directory `<out>/checkpoints/step-NNNNNNNN/`:
- `config.json`, `model.safetensors` (+ `generation_config.json`): the model in Hugging Face format, fp32 master
  weights, loadable with `AutoModelForCausalLM.from_pretrained` once `model.modeling` is imported;
- `optimizer.safetensors`: the full (never rank-partitioned) AdamW moments, `exp_avg.<param>` / `exp_avg_sq.<param>`,
  so a run resumes on any world size and either backend;
- `rng.safetensors`: the global torch RNG states (`torch_cpu`, `torch_cuda` where present) as uint8 tensors;
- `trainer_state.json`: loop state (step, tokens seen), the data loader's position, the resolved config, the git
  commit, the world size, and the fingerprint of config, precision, data and code that decides whether a later run
  may resume it.

It is built in a hidden temporary directory beside its final name and renamed into place, so a run killed at any
moment leaves either a complete checkpoint or none; `latest_checkpoint` only sees complete ones. Loading uses
safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from stages.atomic import atomic_write

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
#: Files of a checkpoint that make up the exported Hugging Face model.
MODEL_FILES: tuple[str, ...] = ("config.json", "generation_config.json", "model.safetensors", STATE_FILE)
_PREFIX = "step-"


def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"{_PREFIX}{step:08d}"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories of interrupted writes are hidden and skipped)."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]))


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, torch.Tensor]:
    """The global torch RNG states as tensors (the loop's own noise is seeded per step; see `stages.train`)."""
    states = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["torch_cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch_cpu"])
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["torch_cuda"])


def write_checkpoint(out_dir: str | Path, step: int, model: Any, weights: dict[str, torch.Tensor],
                     moments: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write one checkpoint atomically (temporary directory, then rename) and return its path.

    `model` is the `TttForCausalLM` whose config is saved; `weights` its full fp32 parameters by name (a ZeRO-3
    module holds only shards, so the weights always come from the backend's gather, never `model.state_dict()`).
    """
    dest = checkpoint_dir(out_dir, step)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        model.save_pretrained(tmp, state_dict=weights)
        save_file(moments, str(tmp / OPTIMIZER_FILE))
        save_file(rng_state(), str(tmp / RNG_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        if dest.exists():  # a re-run that reached the same step again: replace it whole
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_state(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / STATE_FILE).read_text())


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(fp32 weights by parameter name, AdamW moments, RNG states) of a checkpoint; safetensors only."""
    p = Path(path)
    return load_file(str(p / "model.safetensors")), load_file(str(p / OPTIMIZER_FILE)), load_file(str(p / RNG_FILE))


def prune_checkpoints(out_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints and any leftover temporary directories."""
    root = Path(out_dir) / CHECKPOINTS
    for old in list_checkpoints(out_dir)[:-keep] if keep > 0 else list_checkpoints(out_dir):
        shutil.rmtree(old)
    if root.is_dir():
        for tmp in root.glob(f".{_PREFIX}*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)


def clear_checkpoints(out_dir: str | Path) -> None:
    """Remove every checkpoint (a run whose fingerprint changed must not resume from them)."""
    shutil.rmtree(Path(out_dir) / CHECKPOINTS, ignore_errors=True)


def export_model(checkpoint: str | Path, out_dir: str | Path) -> None:
    """Copy a checkpoint's Hugging Face model files and trainer state to `out_dir`, each file atomically."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        src = Path(checkpoint) / name
        if src.is_file():
            atomic_write(Path(out_dir) / name, partial(shutil.copyfile, src))


def fingerprint(obj: Any) -> str:
    """sha256 of a JSON-able object (key order ignored): equal configs and data give equal fingerprints."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()

