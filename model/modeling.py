"""The TtT backbone: transformers' `Qwen2ForCausalLM` taught to read packed rows.

Only the differences from Qwen2 live here (each marked `# TtT:`): a `doc_ids` argument from which the forward
derives per-document position ids and the attention mask of the configured objective (modality-aware for `ttt`,
causal for `ar`, bidirectional within the document for `nar`), in the form the attention backend needs. Without
`doc_ids` the forward is plain Qwen2 (the sampler passes its own masks and positions with a KV cache).

Also: `build_model` (a fresh model from a size preset) and `load_qwen2_backbone` (a local Qwen2.5 directory,
embeddings resized for the added tokens). Importing this module registers the model with the Auto classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention.flex_attention import BlockMask
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from model.attention import MaskKind, additive_mask, dense_mask, document_positions, flex_block_mask
from model.config import TttConfig, make_config
from model.objective import ObjectiveConfig
from model.vocab import TokenSpec


class TttForCausalLM(Qwen2ForCausalLM):
    """Qwen2ForCausalLM + packed-row masks. Weights, layers and checkpoint keys are exactly Qwen2's."""

    config_class = TttConfig  # TtT: carries the token spec and the objective

    @property
    def token_spec(self) -> TokenSpec:
        return self.config.get_token_spec()

    def packed_attention_mask(self, input_ids: torch.Tensor, doc_ids: torch.Tensor,
                              kind: MaskKind) -> torch.Tensor | BlockMask:
        """The mask of `kind` in the form the configured attention backend consumes."""
        impl = self.config._attn_implementation
        spec = self.token_spec
        if impl == "flex_attention":
            return flex_block_mask(input_ids, doc_ids, spec, kind)
        mask = dense_mask(input_ids, doc_ids, spec, kind)
        if impl == "sdpa":
            return mask
        if impl == "eager":
            return additive_mask(mask, self.dtype)  # a boolean mask is silently wrong with eager attention
        raise ValueError(f"attention implementation {impl!r} cannot take a custom mask; "
                         "use 'sdpa', 'eager' or 'flex_attention'")

    def forward(self, input_ids: torch.LongTensor | None = None, doc_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | BlockMask | None = None, position_ids: torch.LongTensor | None = None,
                mask_kind: MaskKind | None = None, **kwargs: Any) -> CausalLMOutputWithPast:
        """`doc_ids` [B, L] (document index per token, -1 for padding) switches on the packed-row path;
        `mask_kind` overrides the objective's mask (the parity test reduces it to `ar`)."""
        # TtT: packed rows — positions restart per document, the mask is derived from the ids.
        if doc_ids is not None:
            if input_ids is None:
                raise ValueError("the packed-row path needs input_ids (the mask is derived from them)")
            if attention_mask is not None:
                raise ValueError("pass either doc_ids (mask built here) or attention_mask, not both")
            kind = mask_kind or self.config.get_objective().objective
            attention_mask = self.packed_attention_mask(input_ids, doc_ids, kind)
            if position_ids is None:
                position_ids = document_positions(doc_ids)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               **kwargs)


AutoConfig.register(TttConfig.model_type, TttConfig, exist_ok=True)
AutoModelForCausalLM.register(TttConfig, TttForCausalLM, exist_ok=True)


def build_model(preset: str, spec: TokenSpec, objective: ObjectiveConfig | None = None,
                attn_implementation: str = "sdpa", seed: int | None = None, **overrides: Any) -> TttForCausalLM:
    """A freshly initialised model of a size preset (`tiny`, `gpu`), deterministic when `seed` is given."""
    config = make_config(preset, spec, objective, attn_implementation=attn_implementation, **overrides)
    if seed is None:
        return TttForCausalLM(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TttForCausalLM(config)


def _check_qwen2_dir(path: Path) -> None:
    """Fail with a message naming exactly what the directory lacks."""
    if not path.is_dir():
        raise FileNotFoundError(f"Qwen2.5 model directory {path} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json; expected a Hugging Face Qwen2.5 model directory")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != Qwen2Config.model_type:
        raise ValueError(f"{config_file} has model_type {model_type!r}, expected 'qwen2' (a Qwen2.5 checkpoint)")
    if not (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").is_file():
        raise FileNotFoundError(f"{path} has no model.safetensors or model.safetensors.index.json; "
                                "only safetensors weights are loaded")


def load_qwen2_backbone(path: str | Path, spec: TokenSpec, objective: ObjectiveConfig | None = None,
                        attn_implementation: str = "sdpa", dtype: torch.dtype | None = None) -> TttForCausalLM:
    """Load a local Qwen2.5 directory as a `TttForCausalLM`, growing the embeddings to hold the added tokens.

    New rows are initialised at the old embeddings' mean (transformers' mean resizing), so the pretrained
    next-token distribution is not disturbed before training.
    """
    p = Path(path)
    _check_qwen2_dir(p)
    base = Qwen2Config.from_pretrained(p).to_dict()
    config = TttConfig.from_dict({**base, "model_type": TttConfig.model_type,
                                  "objective": (objective or ObjectiveConfig()).to_dict()})
    model = TttForCausalLM.from_pretrained(p, config=config, attn_implementation=attn_implementation, dtype=dtype)
    if spec.vocab_size > model.config.vocab_size:
        model.resize_token_embeddings(spec.vocab_size, pad_to_multiple_of=64)
    model.config.token_spec = spec.to_dict()  # set after resizing: the spec may not fit the original vocabulary
    model.config.pad_token_id = spec.pad_id
    model.config.eos_token_id = spec.im_end_id
    return model
