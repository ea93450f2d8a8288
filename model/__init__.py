"""TtT model code: vocabulary, layout, masks, objective, backbone, noising and losses (torch + transformers only).

Names are exported lazily (PEP 562), so `import model` or `from model.vocab import TokenSpec` does not pay for
torch or transformers; `from model import TttForCausalLM` imports the backbone module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "TokenSpec": "model.vocab",
    "ROLE_PAD": "model.vocab",
    "ROLE_PROMPT": "model.vocab",
    "ROLE_ASSISTANT": "model.vocab",
    "interleave_assistant": "model.layout",
    "ObjectiveConfig": "model.objective",
    "TttConfig": "model.config",
    "PRESETS": "model.config",
    "make_config": "model.config",
    "dense_mask": "model.attention",
    "flex_block_mask": "model.attention",
    "document_positions": "model.attention",
    "TttForCausalLM": "model.modeling",
    "build_model": "model.modeling",
    "load_qwen2_backbone": "model.modeling",
    "TrainBatch": "model.noising",
    "prepare_batch": "model.noising",
    "LossParts": "model.losses",
    "ttt_loss": "model.losses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
