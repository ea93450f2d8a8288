"""The Qwen2 subclass: parity with HF Qwen2, mask semantics seen through the logits, attention backends agreeing,
checkpoint round trips, loading a local Qwen2 directory, bf16 autocast and gradients to both losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from model.config import TttConfig
from model.losses import ttt_loss
from model.modeling import TttForCausalLM, build_model, load_qwen2_backbone
from model.noising import prepare_batch
from model.objective import ObjectiveConfig
from model.testing import random_packed_batch, toy_spec

SPEC = toy_spec()
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
A = SPEC.audio_start


@pytest.fixture(scope="module")
def model() -> TttForCausalLM:
    return build_model("tiny", SPEC, seed=0, **SMALL).eval()


def plain_qwen2(model: TttForCausalLM) -> Qwen2ForCausalLM:
    cfg = {k: v for k, v in model.config.to_dict().items() if k not in ("token_spec", "objective", "model_type")}
    hf = Qwen2ForCausalLM(Qwen2Config(**cfg)).eval()
    hf.load_state_dict(model.state_dict())
    return hf


def two_doc_row() -> tuple[torch.Tensor, torch.Tensor]:
    """doc 0: text, one chunk span (positions 3-6), text, tail span (10-13), im_end; doc 1: a short turn; padding."""
    s = SPEC
    doc0 = [s.im_start_id, 1, s.begin_audio_id, A, A + 1, A + 2, s.end_audio_id, 2, 3, s.begin_audio_tail_id,
            A + 3, A + 4, A + 5, s.end_audio_tail_id, s.im_end_id]
    doc1 = [s.im_start_id, 4, 5, s.begin_audio_id, A + 6, A + 7, s.end_audio_id, s.im_end_id]
    ids = torch.tensor([doc0 + doc1 + [s.pad_id] * 3])
    doc = torch.tensor([[0] * len(doc0) + [1] * len(doc1) + [-1] * 3])
    return ids, doc


def logits(model: TttForCausalLM, ids: torch.Tensor, doc: torch.Tensor, kind: str = "ttt") -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, doc_ids=doc, mask_kind=kind).logits


def changed(ids: torch.Tensor, pos: int, new: int) -> torch.Tensor:
    out = ids.clone()
    out[0, pos] = new
    return out


def test_parity_with_hf_qwen2_when_mask_is_causal(model: TttForCausalLM) -> None:
    ids, _ = random_packed_batch(SPEC, 2, 96, torch.Generator().manual_seed(0), max_text=15, max_audio=30)[:2]
    one_doc = torch.zeros_like(ids)
    with torch.no_grad():
        expected = plain_qwen2(model)(input_ids=ids).logits
    torch.testing.assert_close(logits(model, ids, one_doc, "ar"), expected)


def test_packed_row_equals_documents_run_alone(model: TttForCausalLM) -> None:
    ids, doc = two_doc_row()
    hf = plain_qwen2(model)
    packed = logits(model, ids, doc, "ar")
    for d in (0, 1):
        sel = doc[0] == d
        with torch.no_grad():
            alone = hf(input_ids=ids[:, sel]).logits
        torch.testing.assert_close(packed[:, sel], alone)


def test_later_audio_or_text_leaves_earlier_text_unchanged(model: TttForCausalLM) -> None:
    ids, doc = two_doc_row()
    base = logits(model, ids, doc)
    later_audio = logits(model, changed(ids, 11, A + 20), doc)  # inside the tail span
    torch.testing.assert_close(later_audio[:, :10], base[:, :10])
    later_text = logits(model, changed(ids, 8, 9), doc)
    torch.testing.assert_close(later_text[:, :8], base[:, :8])
    assert not torch.allclose(later_text[:, 8:15], base[:, 8:15])


def test_audio_token_sees_later_tokens_of_its_own_span_only(model: TttForCausalLM) -> None:
    ids, doc = two_doc_row()
    base = logits(model, ids, doc)
    out = logits(model, changed(ids, 5, A + 20), doc)  # last code of the first span
    for pos in (3, 4, 6):                                # earlier and later tokens of the same span
        assert not torch.allclose(out[0, pos], base[0, pos])
    torch.testing.assert_close(out[:, :3], base[:, :3])  # the text and begin marker before the span


def test_nothing_crosses_documents(model: TttForCausalLM) -> None:
    ids, doc = two_doc_row()
    for kind in ("ttt", "ar", "nar"):
        base = logits(model, ids, doc, kind)
        torch.testing.assert_close(logits(model, changed(ids, 1, 7), doc, kind)[:, 15:23], base[:, 15:23])
        torch.testing.assert_close(logits(model, changed(ids, 16, 7), doc, kind)[:, :15], base[:, :15])
    nar = logits(model, changed(ids, 12, A + 20), doc, "nar")
    assert not torch.allclose(nar[0, 1], logits(model, ids, doc, "nar")[0, 1])  # nar: text sees later audio


def test_eager_additive_mask_matches_sdpa() -> None:
    sdpa = build_model("tiny", SPEC, seed=1, **SMALL).eval()
    eager = build_model("tiny", SPEC, seed=1, attn_implementation="eager", **SMALL).eval()
    ids, doc = two_doc_row()
    torch.testing.assert_close(logits(eager, ids, doc), logits(sdpa, ids, doc))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flex_attention_path_matches_dense(model: TttForCausalLM) -> None:
    # CPU: FlexAttention runs forward only (transformers compiles it: 10-35 s here); CPU training uses SDPA.
    ids, doc, _ = random_packed_batch(SPEC, 2, 128, torch.Generator().manual_seed(5), max_text=20, max_audio=40)
    dense = logits(model, ids, doc)
    model.set_attn_implementation("flex_attention")
    try:
        flex = logits(model, ids, doc)
    finally:
        model.set_attn_implementation("sdpa")
    torch.testing.assert_close(flex, dense, atol=2e-5, rtol=1e-4)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="FlexAttention has no CPU backward: the GPU training path needs CUDA")


@needs_cuda
@pytest.mark.parametrize("kind", ["ttt", "ar", "nar"])
def test_flex_attention_trains_like_dense_on_cuda(kind: str) -> None:
    # The GPU training path end to end: BlockMask from the same mask_mods, compiled flex kernels, forward + backward.
    ids, doc, role = random_packed_batch(SPEC, 2, 256, torch.Generator().manual_seed(7), max_text=20, max_audio=60)
    batch = prepare_batch(ids, doc, role, SPEC, ObjectiveConfig(p_clean=0.0), torch.Generator().manual_seed(8))
    batch = batch.to("cuda")
    results = {}
    for impl in ("sdpa", "flex_attention"):
        model = build_model("tiny", SPEC, seed=3, attn_implementation=impl, **SMALL).cuda()
        loss = ttt_loss(model(input_ids=batch.input_ids, doc_ids=batch.doc_ids, mask_kind=kind).logits, batch).loss
        loss.backward()
        results[impl] = (loss.detach(), {n: p.grad for n, p in model.named_parameters()})
    (dense_loss, dense_grads), (flex_loss, flex_grads) = results["sdpa"], results["flex_attention"]
    torch.testing.assert_close(flex_loss, dense_loss, atol=1e-5, rtol=1e-5)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(flex_grads[name], grad, atol=1e-5, rtol=1e-3, msg=lambda m, n=name: f"{n}: {m}")


def test_save_and_load_round_trip_with_safetensors(model: TttForCausalLM, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, TttForCausalLM) and isinstance(loaded.config, TttConfig)
    assert loaded.token_spec == SPEC
    assert loaded.config.get_objective() == model.config.get_objective()
    ids, doc = two_doc_row()
    torch.testing.assert_close(logits(loaded, ids, doc), logits(model, ids, doc))


def save_stand_in_qwen2(path: Path, vocab: int = 60) -> Qwen2ForCausalLM:
    hf = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, **SMALL))
    hf.save_pretrained(path)
    return hf


def test_load_qwen2_backbone_resizes_embeddings(tmp_path: Path) -> None:
    hf = save_stand_in_qwen2(tmp_path, vocab=60)  # smaller than the spec's 104 ids
    model = load_qwen2_backbone(tmp_path, SPEC, ObjectiveConfig(p_clean=0.5)).eval()
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] >= SPEC.vocab_size and emb.shape[0] % 64 == 0
    torch.testing.assert_close(emb[:60], hf.get_input_embeddings().weight)
    assert model.token_spec == SPEC and model.config.get_objective().p_clean == 0.5
    ids, doc = two_doc_row()
    assert logits(model, ids, doc).shape == (1, ids.shape[1], emb.shape[0])


def test_load_qwen2_backbone_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_qwen2_backbone(tmp_path / "nope", SPEC)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_qwen2_backbone(tmp_path, SPEC)
    save_stand_in_qwen2(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_qwen2_backbone(tmp_path, SPEC)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama'"):
        load_qwen2_backbone(tmp_path, SPEC)


def test_bf16_autocast_forward(model: TttForCausalLM) -> None:
    ids, doc = two_doc_row()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = logits(model, ids, doc)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), logits(model, ids, doc), atol=0.1, rtol=0.1)


def test_gradients_flow_to_both_losses() -> None:
    model = build_model("tiny", SPEC, seed=2, **SMALL)
    ids, doc, role = random_packed_batch(SPEC, 2, 128, torch.Generator().manual_seed(6), max_text=20, max_audio=40)
    cfg = ObjectiveConfig(p_clean=0.0)
    batch = prepare_batch(ids, doc, role, SPEC, cfg, torch.Generator().manual_seed(0))
    for part in ("text", "audio"):
        model.zero_grad()
        parts = ttt_loss(model(input_ids=batch.input_ids, doc_ids=batch.doc_ids, mask_kind=batch.mask_kind).logits,
                         batch)
        getattr(parts, part).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, part
        assert all(torch.isfinite(g).all() for g in grads)
