"""Tests for stages/train_checkpoint.py: atomic checkpoints, newest-complete lookup, pruning, pickle-free loading."""

from __future__ import annotations

import json
import stat

import pytest
import torch

from model.modeling import build_model
from model.testing import toy_spec
from stages import train_checkpoint as ckpt
from stages.atomic import FILE_MODE

SPEC = toy_spec(text_vocab=64, audio_size=32)


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", SPEC, seed=0)


def write(out, step, model, **state):
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    moments = {f"exp_avg.{n}": torch.full_like(w, step) for n, w in weights.items()}
    return ckpt.write_checkpoint(out, step, model, weights, moments, {"step": step, **state})


def test_checkpoint_round_trips_through_safetensors_and_json(tmp_path, model):
    torch.manual_seed(42)
    path = write(tmp_path, 3, model, loader={"epoch": 1, "index": 8})
    torch.rand(5)  # move the global RNG on; the checkpoint holds the state before
    assert path == ckpt.checkpoint_dir(tmp_path, 3) and ckpt.latest_checkpoint(tmp_path) == path
    weights, moments, rng = ckpt.read_tensors(path)
    for name, p in model.named_parameters():
        assert torch.equal(weights[name], p.detach()) and torch.equal(moments[f"exp_avg.{name}"],
                                                                      torch.full_like(p, 3))
    ckpt.set_rng_state(rng)
    expected = torch.rand(5)
    torch.manual_seed(42)
    assert torch.equal(torch.rand(5), expected)
    assert ckpt.read_state(path) == {"step": 3, "loader": {"epoch": 1, "index": 8}}
    suffixes = {f.suffix for f in path.iterdir()}
    assert suffixes <= {".json", ".safetensors"}, "nothing in a checkpoint needs unpickling"
    assert json.loads((path / "config.json").read_text())["token_spec"] == SPEC.to_dict()


def test_interrupted_writes_are_invisible_and_pruned(tmp_path, model):
    for step in (2, 4, 6):
        write(tmp_path, step, model)
    leftover = tmp_path / ckpt.CHECKPOINTS / ".step-00000008.abc.tmp"  # a write killed before its rename
    leftover.mkdir()
    (leftover / ckpt.STATE_FILE).write_text("{}")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004", "step-00000006"]
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000004", "step-00000006"]
    assert not leftover.exists()
    ckpt.clear_checkpoints(tmp_path)
    assert ckpt.latest_checkpoint(tmp_path) is None


def test_export_copies_the_hf_model_and_state(tmp_path, model):
    path = write(tmp_path / "run", 5, model)
    ckpt.export_model(path, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(ckpt.MODEL_FILES)
    for exported in (tmp_path / "out").iterdir():
        assert exported.read_bytes() == (path / exported.name).read_bytes()
        assert stat.S_IMODE(exported.stat().st_mode) == FILE_MODE, "readable like any output, not mkstemp's 0600"


def test_fingerprint_ignores_key_order_and_sees_values():
    assert ckpt.fingerprint({"a": 1, "b": [1, 2]}) == ckpt.fingerprint({"b": [1, 2], "a": 1})
    assert ckpt.fingerprint({"a": 1}) != ckpt.fingerprint({"a": 2})
