"""Tests for stages/train_backend.py: both backends take the same steps, and their full state moves between them.

The DeepSpeed tests run DeepSpeed on the CPU in this process (gloo, rank 0 of 1; DESIGN §4) and are skipped where
the optional `gpu` extra is not installed.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from model.modeling import build_model
from model.noising import prepare_batch
from model.objective import ObjectiveConfig
from model.testing import random_packed_batch, toy_spec
from stages.train import noise_generator, train_step
from stages.train_backend import (MOMENTS, DeepSpeedBackend, TorchBackend, cpu_has_native_bf16, deepspeed_config,
                                  make_optimizer, moment_key)

SPEC = toy_spec(text_vocab=64, audio_size=32)
LR, BETAS, WD, CLIP = 3e-3, (0.9, 0.95), 0.1, 1.0
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="DeepSpeed is the optional `gpu` extra (pip install -e .[gpu])")


@pytest.fixture(scope="module")
def micro_batches():
    """Three steps of two micro-batches each (BANOM, PPM and SST all active)."""
    rows = random_packed_batch(SPEC, 4, 128, torch.Generator().manual_seed(9), max_text=20, max_audio=40)
    cfg = ObjectiveConfig()
    return [[prepare_batch(*(t[2 * m:2 * m + 2] for t in rows), SPEC, cfg, noise_generator(1, 0, s, m))
             for m in range(2)] for s in range(3)]


def torch_backend(model: torch.nn.Module) -> TorchBackend:
    return TorchBackend(model, make_optimizer(model, LR, BETAS, WD), torch.device("cpu"), 2, CLIP, False)


def run(backend, steps) -> list[float]:
    """[loss, grad norm, loss, grad norm, ...] of the given steps."""
    out = []
    for micro in steps:
        backend.set_lr(LR)
        sums, norm = train_step(backend, micro, SPEC, 1.0)
        out += [sums.loss, norm]
    return out


def test_make_optimizer_decays_matrices_only():
    model = build_model("tiny", SPEC, seed=0)
    decay, no_decay = make_optimizer(model, LR, BETAS, WD).param_groups
    assert decay["weight_decay"] == WD and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_torch_state_round_trip_continues_exactly(micro_batches):
    first = torch_backend(build_model("tiny", SPEC, seed=0))
    run(first, micro_batches[:2])
    weights, moments = first.full_state()
    assert set(moments) == {moment_key(m, n) for n in weights for m in MOMENTS}
    expected = run(first, micro_batches[2:])

    second = torch_backend(build_model("tiny", SPEC, seed=5))  # different weights: restore must overwrite them
    second.restore(weights, moments, step=2)
    assert run(second, micro_batches[2:]) == expected


@pytest.fixture
def ds_env(monkeypatch):
    """DESIGN §4: rank 0 of 1 on loopback, so DeepSpeed needs no launcher or MPI; undone after the test."""
    from stages.train_backend import _free_port

    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", str(_free_port()))):
        monkeypatch.setenv(key, value)


def ds_backend(model: torch.nn.Module, zero_stage: int, bf16: bool = False) -> DeepSpeedBackend:
    config = deepspeed_config(2, 2, 1, CLIP, bf16=bf16, zero_stage=zero_stage, cuda=False)
    return DeepSpeedBackend(model, make_optimizer(model, LR, BETAS, WD), config)


@needs_deepspeed
@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_deepspeed_matches_torch_and_its_state_moves_between_backends(micro_batches, ds_env, zero_stage):
    reference = run(torch_backend(build_model("tiny", SPEC, seed=0)), micro_batches)

    ds = ds_backend(build_model("tiny", SPEC, seed=0), zero_stage)
    try:
        got = run(ds, micro_batches[:2])
        assert got == pytest.approx(reference[:4], rel=1e-4), "same loss and grad norm with accumulation + clipping"
        weights, moments = ds.full_state()
        continued = run(ds, micro_batches[2:])
        assert continued == pytest.approx(reference[4:], rel=1e-4)

        # a DeepSpeed checkpoint resumes on the torch backend (and hence on any world size) ...
        plain = torch_backend(build_model("tiny", SPEC, seed=0))
        plain.restore(weights, moments, step=2)
        assert run(plain, micro_batches[2:]) == pytest.approx(continued, rel=1e-4)
        # ... and on a fresh DeepSpeed engine, whose lazily created optimizer state is materialised first
        model = build_model("tiny", SPEC, seed=7)
        model.load_state_dict(weights, strict=False)
        again = ds_backend(model, zero_stage)
        again.restore(weights, moments, step=2)
        assert run(again, micro_batches[2:]) == pytest.approx(continued, rel=1e-4)
    finally:
        ds.close()


@needs_deepspeed
@pytest.mark.slow
def test_deepspeed_bf16_resume_restores_the_fp32_masters(micro_batches, ds_env):
    """bf16 weights are rounded masters: a resume must bring back the fp32 masters, not re-derive them."""
    ds = ds_backend(build_model("tiny", SPEC, seed=0), zero_stage=2, bf16=True)
    try:
        run(ds, micro_batches[:2])
        weights, moments = ds.full_state()
        assert all(w.dtype == torch.float32 for w in weights.values())
        rounded = {n: w.to(torch.bfloat16).float() for n, w in weights.items()}
        assert any(not torch.equal(weights[n], rounded[n]) for n in weights), "the masters carry more than bf16"
        continued = run(ds, micro_batches[2:])

        model = build_model("tiny", SPEC, seed=7)
        model.load_state_dict(weights, strict=False)
        again = ds_backend(model, zero_stage=2, bf16=True)
        again.restore(weights, moments, step=2)
        restored, _ = again.full_state()
        assert all(torch.equal(restored[n], weights[n]) for n in weights)
        assert run(again, micro_batches[2:]) == pytest.approx(continued, rel=1e-5)
    finally:
        ds.close()


@pytest.mark.parametrize("flags, native", [("fpu avx2 avx512f avx512bw", False), ("fpu avx512f avx512_bf16", True),
                                           ("fpu amx_bf16 amx_tile", True), ("fpu avx512_bf16x", False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some cpu\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_has_native_bf16(cpuinfo) is native


def test_an_unreadable_cpuinfo_means_no_native_bf16(tmp_path):
    assert cpu_has_native_bf16(tmp_path / "missing") is False
