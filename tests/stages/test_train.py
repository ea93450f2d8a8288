"""Tests for stages/train.py: params, schedule, the step function, the golden loss curve, exact resume after SIGKILL.

The fixture is the committed mini shard in tests/assets/train_mini (random packed rows over a toy vocabulary, a
few KB); `train_mini_fixture.py` there builds it and rewrites the golden curve after an intended change.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.losses import ttt_loss
from model.modeling import build_model
from model.noising import prepare_batch
from model.objective import ObjectiveConfig
from model.testing import random_packed_batch, toy_spec
from stages import train_checkpoint as ckpt
from stages.audio_codec import AudioCodec, CodecConfig
from stages.config import ParamsError, from_mapping
from stages.train import (TRAINING_CODE, TrainParams, code_fingerprint, lr_at, modality_losses, noise_generator,
                          resolve_precision, run_train, train_step)
from stages.tokenizers import EXTERNAL_FILE
from stages.train_backend import TorchBackend, make_optimizer

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "assets" / "train_mini"
sys.path.insert(0, str(MINI))
import train_mini_fixture as golden  # noqa: E402  (the fixture's own builder and reader)

SPEC = toy_spec(text_vocab=64, audio_size=32)


def run_mini(tmp: Path, **overrides) -> list[dict[str, float]]:
    """`run_train` on the mini shard with the golden params plus `overrides`; returns the per-step curves."""
    params = TrainParams(**{**golden.GOLDEN_PARAMS, **overrides})
    run_train(params, golden.GOLDEN_SEED, golden.SHARDS, golden.TOKENIZERS, tmp / "model", tmp / "metrics",
              progress=False)
    return golden.read_curves(tmp / "metrics")


# --- params and schedule -----------------------------------------------------------------------------------------
def test_params_reject_bad_values_and_map_to_the_objective():
    with pytest.raises(ParamsError, match="steps must be >= 1"):
        from_mapping(TrainParams, {"steps": 0}, "train")
    with pytest.raises(ParamsError, match="p_clean"):
        from_mapping(TrainParams, {"p_clean": 1.5}, "train")
    with pytest.raises(ParamsError, match="not one of"):
        from_mapping(TrainParams, {"zero_stage": 4}, "train")
    with pytest.raises(ParamsError, match="unknown key"):
        from_mapping(TrainParams, {"learning_rate": 1e-3}, "train")
    p = from_mapping(TrainParams, {"objective": "nar", "p_trunc": 0.0, "lambda_audio": 2.0}, "train")
    assert p.objective_config() == ObjectiveConfig(objective="nar", p_trunc=0.0, lambda_audio=2.0)


def test_lr_warms_up_linearly_then_follows_the_cosine_to_its_floor():
    p = TrainParams(lr=1e-3, warmup_steps=4, steps=20, min_lr_ratio=0.1)
    assert [lr_at(s, p) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    decay = [lr_at(s, p) for s in range(4, 20)]
    assert decay[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(decay, decay[1:])), "strictly decreasing after warm-up"
    assert lr_at(20, p) == pytest.approx(1e-4) and decay[-1] > 1e-4
    assert lr_at(12, p) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_noise_generator_is_a_pure_function_of_its_keys():
    draw = lambda *k: torch.rand(4, generator=noise_generator(*k))  # noqa: E731
    assert torch.equal(draw(1, 0, 5, 0, 0), draw(1, 0, 5, 0, 0))
    assert not torch.equal(draw(1, 0, 5, 0, 0), draw(1, 0, 5, 1, 0))
    assert not torch.equal(draw(1, 0, 5, 0, 0), draw(1, 0, 6, 0, 0))
    assert not torch.equal(draw(1, 0, 5, 0, 0), draw(2, 0, 5, 0, 0))


# --- losses per modality and the step -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rows():
    return random_packed_batch(SPEC, 2, 128, torch.Generator().manual_seed(3), max_text=20, max_audio=40)


@pytest.mark.parametrize("objective", ["ttt", "ar", "nar"])
def test_modality_losses_split_the_objectives_targets(rows, objective):
    batch = prepare_batch(*rows, SPEC, ObjectiveConfig(objective=objective, p_clean=0.0),
                          torch.Generator().manual_seed(0))
    logits = torch.randn(*batch.input_ids.shape, SPEC.vocab_size, generator=torch.Generator().manual_seed(1))
    (text, n_text), (audio, n_audio) = modality_losses(logits, batch, SPEC)
    parts = ttt_loss(logits, batch)
    assert n_text > 0 and n_audio > 0, "every objective has targets of both modalities"
    if objective == "ttt":  # exactly the AR and the diffusion part
        assert (float(text), n_text, float(audio), n_audio) == pytest.approx(
            (float(parts.text), parts.n_text, float(parts.audio), parts.n_audio_docs))
    if objective == "ar":  # the token-weighted split recombines to the whole next-token loss
        assert n_text + n_audio == parts.n_text
        assert (float(text) * n_text + float(audio) * n_audio) / parts.n_text == pytest.approx(float(parts.text))


def test_train_step_learns_a_repeated_batch(rows):
    model = build_model("tiny", SPEC, seed=0)
    backend = TorchBackend(model, make_optimizer(model, 3e-3, (0.9, 0.95), 0.0), torch.device("cpu"), 1, 1.0, False)
    batch = prepare_batch(*rows, SPEC, ObjectiveConfig(p_clean=0.0), noise_generator(0, 0, 0))
    losses = []
    for _ in range(12):
        sums, grad_norm = train_step(backend, [batch], SPEC, 1.0)
        assert math.isfinite(grad_norm) and grad_norm > 0
        losses.append(sums.loss)
    assert losses[-1] < 0.5 * losses[0], losses


# --- golden curve ----------------------------------------------------------------------------------------------------
def test_golden_loss_curve(tmp_path):
    """Fixed seed, committed mini shard: the losses match the stored curve (train_mini_fixture.py rewrites it)."""
    stored = json.loads(golden.GOLDEN.read_text())
    assert stored["params"] == golden.GOLDEN_PARAMS and stored["seed"] == golden.GOLDEN_SEED
    curves = run_mini(tmp_path)
    assert [row["step"] for row in curves] == [row["step"] for row in stored["losses"]]
    for got, want in zip(curves, stored["losses"]):
        for name, value in want.items():
            assert got[name] == pytest.approx(value, rel=2e-3, abs=1e-4), (got["step"], name)


# --- exact resume after SIGKILL ------------------------------------------------------------------------------------
RESUME = dict(steps=8, checkpoint_every=2, eval_every=4, keep_checkpoints=2)


def tokenizers_with_codec(tmp: Path, codes: int = 32) -> Path:
    """The mini run's tokenizers plus an embedded codec of `codes` centroids (the toy vocabulary's audio size)."""
    out = tmp / "tokenizers"
    shutil.copytree(golden.TOKENIZERS, out)
    config = CodecConfig(codebook_size=codes, decoder="centroid")
    centroids = torch.randn(codes, config.stack * config.n_mels, generator=torch.Generator().manual_seed(5))
    AudioCodec(config, centroids).save(out / "audio")
    return out


def test_codec_embedding_init_starts_from_the_codec_and_names_what_is_missing(tmp_path):
    params = TrainParams(**{**golden.GOLDEN_PARAMS, "audio_embedding_init": "codec", "steps": 1})
    codec_run = tmp_path / "codec"
    run_train(params, golden.GOLDEN_SEED, golden.SHARDS, tokenizers_with_codec(codec_run), codec_run / "model",
              codec_run / "metrics", progress=False)
    first = golden.read_curves(codec_run / "metrics")[0]
    golden_first = json.loads(golden.GOLDEN.read_text())["losses"][0]
    # step-0 validation runs before any update, with the golden run's seed: only the audio rows can move it
    assert first["val/audio_loss"] != pytest.approx(golden_first["val/audio_loss"], rel=1e-3)
    with pytest.raises(FileNotFoundError, match="codec_config.json"):
        run_train(params, golden.GOLDEN_SEED, golden.SHARDS, golden.TOKENIZERS, tmp_path / "m1", tmp_path / "x1",
                  progress=False)
    external = tmp_path / "external"
    shutil.copytree(golden.TOKENIZERS, external)
    (external / "audio").mkdir()
    (external / "audio" / EXTERNAL_FILE).write_text("{}")
    with pytest.raises(ValueError, match="audio_embedding_init: random"):
        run_train(params, golden.GOLDEN_SEED, golden.SHARDS, external, tmp_path / "m2", tmp_path / "x2",
                  progress=False)


def write_params(path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"base": {"seed": golden.GOLDEN_SEED},
                                    "train": {**golden.GOLDEN_PARAMS, **RESUME}}))
    return path


def cli(params: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "stages.train", "--params", str(params), "--shards", str(golden.SHARDS),
            "--tokenizer", str(golden.TOKENIZERS), "--out", str(out / "model"), "--metrics", str(out / "metrics"),
            "--no-progress"]


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_and_reproduces_the_uninterrupted_curve(tmp_path):
    reference = run_mini(tmp_path / "ref", **RESUME)
    params = write_params(tmp_path / "params.yaml")
    out = tmp_path / "killed"
    proc = subprocess.Popen(cli(params, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while ckpt.latest_checkpoint(out / "model") is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.latest_checkpoint(out / "model")
    assert killed_at is not None, proc.stderr.read().decode()[-2000:]
    assert ckpt.read_state(killed_at)["step"] < RESUME["steps"], "the run finished before it could be killed"
    assert not (out / "model" / "model.safetensors").exists(), "nothing is exported before the run finishes"

    done = subprocess.run(cli(params, out), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = golden.read_curves(out / "metrics")
    assert [r["step"] for r in resumed] == [r["step"] for r in reference], "no missing or duplicated steps"
    for got, want in zip(resumed, reference):
        assert set(got) == set(want)
        for name in want:
            if name not in ("train/tokens_per_s", "train/tokens_per_s_median"):
                assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6), (got["step"], name)

    state = json.loads((out / "model" / ckpt.STATE_FILE).read_text())
    assert state["step"] == RESUME["steps"] and state["world_size"] == 1
    assert state["config"]["train"] == {**dataclasses.asdict(TrainParams()), **golden.GOLDEN_PARAMS, **RESUME}
    assert state["git"]["sha"] != "unknown" and state["fingerprint"]
    assert (state["loader"]["epoch"], state["loader"]["index"]) > (0, 0), "the loader position is saved"
    assert len(ckpt.list_checkpoints(out / "model")) == RESUME["keep_checkpoints"]
    final = sorted(p.name for p in (out / "model").iterdir() if p.is_file())
    assert final == sorted(["config.json", "generation_config.json", "model.safetensors", ckpt.STATE_FILE])


def test_a_changed_config_does_not_resume_stale_checkpoints(tmp_path):
    run_mini(tmp_path, steps=2, checkpoint_every=1, eval_every=2)
    assert ckpt.read_state(ckpt.latest_checkpoint(tmp_path / "model"))["step"] == 2
    curves = run_mini(tmp_path, steps=2, checkpoint_every=1, eval_every=2, lr=1e-3)
    assert curves[0]["step"] == 0, "a fresh run logs its step-0 validation again"
    state = ckpt.read_state(ckpt.latest_checkpoint(tmp_path / "model"))
    assert state["config"]["train"]["lr"] == 1e-3 and state["step"] == 2


def test_changed_training_code_does_not_resume_a_finished_run(tmp_path, monkeypatch):
    """`models/ttt` persists across `dvc repro`: after a loss edit DVC re-runs train, which must train afresh."""
    def checkpoint_written() -> int:
        return (ckpt.latest_checkpoint(tmp_path / "model") / ckpt.STATE_FILE).stat().st_mtime_ns

    run_mini(tmp_path, steps=2, checkpoint_every=1, eval_every=2)
    weights, written = (tmp_path / "model" / "model.safetensors").read_bytes(), checkpoint_written()
    run_mini(tmp_path, steps=2, checkpoint_every=1, eval_every=2)
    assert checkpoint_written() == written, "same code, config and data: the finished run is resumed, not redone"
    edited = {**code_fingerprint(), "model/losses.py": "0" * 64}
    monkeypatch.setattr("stages.train.code_fingerprint", lambda: edited)
    run_mini(tmp_path, steps=2, checkpoint_every=1, eval_every=2)
    assert checkpoint_written() != written, "edited code: the stale checkpoints are discarded and training redone"
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == weights, "deterministically"


def test_the_code_fingerprint_covers_every_training_source_and_sees_edits(tmp_path):
    for entry in TRAINING_CODE:
        target = tmp_path / entry / "x.py" if "." not in entry else tmp_path / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("a = 1\n")
    (tmp_path / "model" / "sampling").mkdir()
    (tmp_path / "model" / "sampling" / "y.py").write_text("b = 2\n")
    before = code_fingerprint(tmp_path)
    assert set(before) == {"model/x.py", "model/sampling/y.py", *[e for e in TRAINING_CODE if "." in e]}
    (tmp_path / "model" / "sampling" / "y.py").write_text("b = 3\n")
    assert code_fingerprint(tmp_path) != before
    assert set(code_fingerprint()) >= {"model/losses.py", "model/noising.py", "stages/train.py", "stages/dataset.py"}


def test_the_training_code_is_the_train_stages_code_deps_in_dvc_yaml():
    """DVC re-runs `train` when a dep changes; the resume fingerprint must see exactly those sources."""
    import yaml

    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    assert set(TRAINING_CODE) == {d for d in deps if not d.startswith(("data/", "models/"))}


def test_the_exported_model_loads_with_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    metrics = run_mini(tmp_path, steps=1, eval_every=1)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert type(model).__name__ == "TttForCausalLM" and model.token_spec == SPEC
    summary = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert summary["step"] == 1 and {"text_loss", "audio_loss", "loss"} <= set(summary["val"])
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "tokens", "tokens_per_s_median"} <= set(summary["train"])
    assert metrics[-1]["val/loss"] == pytest.approx(summary["val"]["loss"])


def test_the_command_line_overrides_train_params_and_seed_without_editing_the_params_file(tmp_path):
    import yaml

    from stages.train import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"base": {"seed": 1}, "train": golden.GOLDEN_PARAMS}))
    paths = ["--params", str(params), "--shards", str(golden.SHARDS), "--tokenizer", str(golden.TOKENIZERS),
             "--no-progress"]
    main([*paths, "--out", str(tmp_path / "model"), "--metrics", str(tmp_path / "metrics"), "--set", "steps=2",
          "--set", "eval_every=2", "--seed", str(golden.GOLDEN_SEED)])
    state = json.loads((tmp_path / "model" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["config"]["train"]["steps"] == 2
    assert state["config"]["seed"] == golden.GOLDEN_SEED + 7  # the CLI seed, plus train's SEED_OFFSET
    assert yaml.safe_load(params.read_text())["train"] == golden.GOLDEN_PARAMS
    with pytest.raises(ParamsError, match=r"--set: unknown key\(s\) \['stepz'\]"):
        main([*paths, "--out", str(tmp_path / "bad"), "--metrics", str(tmp_path / "bad_metrics"), "--set", "stepz=2"])


def test_the_last_step_logs_the_median_throughput_of_the_run(tmp_path):
    curves = run_mini(tmp_path, steps=3, eval_every=3)
    steps = [row for row in curves if "train/tokens_per_s" in row]
    rates = [row["train/tokens_per_s"] for row in steps]
    assert len(rates) == 3 and ["train/tokens_per_s_median" in row for row in steps] == [False, False, True]
    assert curves[-1]["train/tokens_per_s_median"] == pytest.approx(statistics.median(rates))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="DeepSpeed is the optional `gpu` extra (pip install -e .[gpu])")
def test_the_deepspeed_backend_trains_the_golden_curve(tmp_path, monkeypatch):
    """The whole recipe on DeepSpeed (ZeRO-2, fp32, CPU, rank 0 of 1): the same curve as the torch backend."""
    from stages.train_backend import _free_port

    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", str(_free_port()))):
        monkeypatch.setenv(key, value)
    stored = json.loads(golden.GOLDEN.read_text())["losses"]
    curves = run_mini(tmp_path, backend="deepspeed")
    for got, want in zip(curves, stored, strict=True):
        for name, value in want.items():
            assert got[name] == pytest.approx(value, rel=2e-3, abs=1e-4), (got["step"], name)
    assert ckpt.read_state(tmp_path / "model")["config"]["deepspeed"]["zero_optimization"]["stage"] == 2


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_it(monkeypatch, native, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("stages.train.cpu_has_native_bf16", lambda: native)
    assert resolve_precision(TrainParams(precision="auto")) == want
    assert resolve_precision(TrainParams(precision="fp32")) == "fp32"
    assert resolve_precision(TrainParams(precision="bf16")) == "bf16"
