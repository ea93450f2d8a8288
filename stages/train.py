"""train: hybrid AR-NAR training of the TtT model (or the `ar` / `nar` baselines) on the packed shards.

    dvc repro train
    python -m flows.train --params params.yaml --shards data/shards --tokenizer models/tokenizers \\
        --out models/ttt --metrics reports/train                       # the DVC stage: a Prefect flow, one process
    python -m stages.train --params params.yaml --shards data/shards --tokenizer models/tokenizers \\
        --out models/ttt --metrics reports/train                       # the same recipe without Prefect
    python -m stages.train --set steps=4800 --set model=gpu --seed 99 --out /tmp/run --metrics /tmp/run/metrics
                                                                       # a one-off variant, params.yaml untouched
    deepspeed --num_gpus 8 --module stages.train --params params.yaml --shards data/shards \\
        --tokenizer models/tokenizers --out models/ttt --metrics reports/train                  # 8 GPUs, one node
    deepspeed --hostfile hostfile --num_nodes 2 --num_gpus 8 --master_addr node0 --module stages.train \\
        --params params.yaml --shards data/shards --tokenizer models/tokenizers --out models/ttt \\
        --metrics reports/train                                        # 2 nodes x 8 GPUs (same paths on each)

The `gpu` profile: `ttt profile gpu && dvc repro train` on one GPU; the `deepspeed` lines above on several (the
launcher sets RANK / LOCAL_RANK / WORLD_SIZE and starts one process per GPU).

A recipe in three parts (torchtune's full_finetune_single_device, nanochat's base_train):
- setup: read the token spec, open the shards, decide whether to resume (the newest complete checkpoint in
  `<out>/checkpoints/` whose fingerprint of config, resolved precision, data and training code matches this run;
  a mismatch discards the checkpoints),
  build or load the model, wrap it in a backend (`stages.train_backend`: DeepSpeed ZeRO on CUDA, plain PyTorch
  AdamW on the CPU), restore the optimizer moments, RNG states and data-loader position;
- train: `steps` optimizer steps of `grad_accum` micro-batches each (`train_step`, the one step function of every
  backend), validation every `eval_every` steps and at the start and end, a checkpoint every `checkpoint_every`
  steps and at the end, metrics through dvclive and a rich progress bar (`stages.train_metrics`);
- cleanup: export the last checkpoint's Hugging Face model and trainer state to `<out>/`, close the logger and
  the process group.

Determinism and exact resume: the row order is a pure function of (seed, epoch) and the loader position
(`stages.dataset`); the noise of micro-batch `m` of step `s` on rank `r` comes from a generator seeded by
(seed, s, m, r), so it needs no saved state; weights, AdamW moments and the step count round-trip exactly through
safetensors. A run killed at any point resumes from its last checkpoint and reproduces the uninterrupted run's
losses (tests/stages/test_train_resume.py).

Logged metrics (train/* every step, val/* at each validation), for every objective:
`loss` (the objective being optimised, mean over micro-batches), `text_loss` / `audio_loss` (that objective's loss
on text-class / audio-class targets: for `ttt` exactly its AR and diffusion parts; for `ar` the next-token loss on
each modality; for `nar` the diffusion loss restricted to each modality), `lr`, `grad_norm` (before clipping),
`tokens_per_s` (non-padding tokens of the global batch per second of step time), `tokens` (seen so far)
and, on CUDA, `peak_mem_gb` (the most GPU memory this rank has allocated).
At the last step also `tokens_per_s_median`, the median of `tokens_per_s` over the steps this process ran: the
steady throughput figure (a single step's value swings by ±30 % on a shared CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from model.losses import audio_loss, text_loss, ttt_loss
from model.noising import TrainBatch, prepare_batch
from model.objective import ObjectiveConfig
from model.vocab import TokenSpec
from stages import train_checkpoint as ckpt
from stages.dataset import FIELDS, PackedLoader, PackedRows
from stages.git_state import git_state
from stages.train_backend import (Backend, DeepSpeedBackend, TorchBackend, cpu_has_native_bf16, deepspeed_available,
                                  deepspeed_config, distributed_env, make_optimizer)
from stages.train_metrics import MetricsLog, ProgressBar

#: Added to `base.seed` so training never shares a random stream with a data stage.
SEED_OFFSET = 7
#: Noise streams: training micro-batches and the fixed validation batches never draw the same numbers.
TRAIN_STREAM, VAL_STREAM = 0, 1
#: Where the tokenizers stage leaves the resolved ids (`stages.tokenizers.TEXT_DIR`, `stages.text_tokenizer.SPEC_FILE`;
#: not imported: both modules pull in the codec and transformers).
TOKEN_SPEC_PATH = Path("text") / "token_spec.json"


@dataclass(frozen=True)
class TrainParams:
    """`train` section of params.yaml."""

    objective: Literal["ttt", "ar", "nar"] = "ttt"
    """`ttt`: AR text + masked-diffusion audio (the method); `ar` / `nar`: the baselines (DESIGN §1)."""
    lambda_audio: float = 1.0
    """Weight of the audio (diffusion) loss: `L = L_text + lambda_audio * L_audio`."""
    p_clean: float = 0.3
    """BANOM: probability that a micro-batch stays clean and trains the AR loss only (0 switches BANOM off)."""
    p_prefix: float = 0.3
    """PPM: per-document probability of keeping the audio before a random span clean (0 switches PPM off)."""
    p_trunc: float = 0.5
    """SST: per-document probability of truncating the tail audio span (0 switches SST off)."""
    t_min: float = 0.0
    """Floor of the per-document noise level, `t ~ U(t_min, 1)` (`model.objective.ObjectiveConfig.t_min`)."""
    model: Literal["tiny", "gpu"] = "tiny"
    """Size preset of a freshly initialised backbone (`model.config.PRESETS`); ignored when `qwen_dir` is set."""
    qwen_dir: str = ""
    """Local Qwen2.5 directory to start from (full profile; embeddings grown for the added tokens)."""
    audio_embedding_init: Literal["random", "codec"] = "random"
    """`codec`: a fresh model's audio-code embedding rows start at the embedded codec's centroids (rotated and
    scaled, `model.audio_embeddings`), so codes that sound alike start alike; `random`: the backbone's own init."""
    lr: float = 3e-3
    """Peak learning rate (after warm-up)."""
    min_lr_ratio: float = 0.1
    """The cosine schedule ends at `lr * min_lr_ratio`."""
    warmup_steps: int = 10
    """Linear warm-up steps from `lr / warmup_steps` to `lr`."""
    weight_decay: float = 0.1
    """AdamW weight decay on weight matrices (norm gains and biases are not decayed)."""
    beta1: float = 0.9
    """AdamW first-moment decay."""
    beta2: float = 0.95
    """AdamW second-moment decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    micro_batch_size: int = 8
    """Packed rows per micro-batch per rank (per GPU)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; global batch = micro_batch_size x grad_accum x world size."""
    steps: int = 100
    """Optimizer steps (the cosine schedule spans them)."""
    eval_every: int = 25
    """Validate every this many steps (and at step 0 and the last step)."""
    eval_rows: int = 64
    """Validation rows (the first ones of the val split; 0: all of them)."""
    checkpoint_every: int = 25
    """Write a checkpoint every this many steps (and at the last step)."""
    keep_checkpoints: int = 1
    """How many of the newest checkpoints to keep."""
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    """`bf16`: DeepSpeed keeps bf16 weights with fp32 masters; the torch backend autocasts. `auto`: bf16 where the
    hardware has bf16 arithmetic (CUDA that supports it; a CPU with AVX512-BF16 or AMX, ~1.9x faster than fp32 on
    an AMD EPYC), fp32 elsewhere (a CPU that only emulates bf16 runs it ~2.5x slower, DESIGN §4)."""
    zero_stage: Literal[1, 2, 3] = 2
    """DeepSpeed ZeRO stage: 2 shards optimizer state and gradients, 3 also the weights."""
    backend: Literal["auto", "torch", "deepspeed"] = "auto"
    """`deepspeed` on CUDA when it is installed, else `torch` (plain PyTorch AdamW, one process) — see `auto`."""
    attn_implementation: Literal["auto", "sdpa", "flex_attention"] = "auto"
    """`auto`: FlexAttention with block-sparse packed masks on CUDA, dense-mask SDPA on the CPU (no flex backward)."""

    def __post_init__(self) -> None:
        self.objective_config()  # validates lambda and the strategy probabilities
        positive = ("micro_batch_size", "grad_accum", "steps", "eval_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need lr > 0 and 0 <= min_lr_ratio <= 1, got {self.lr}, {self.min_lr_ratio}")
        if self.warmup_steps < 0 or self.eval_rows < 0 or self.keep_checkpoints < 1 or self.grad_clip < 0:
            raise ValueError("warmup_steps, eval_rows, grad_clip must be >= 0 and keep_checkpoints >= 1")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {self.beta1}, {self.beta2}")

    def objective_config(self) -> ObjectiveConfig:
        return ObjectiveConfig(objective=self.objective, lambda_audio=self.lambda_audio, p_clean=self.p_clean,
                               p_prefix=self.p_prefix, p_trunc=self.p_trunc, t_min=self.t_min)


def lr_at(step: int, p: TrainParams) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up, then cosine down to `lr * min_lr_ratio`."""
    if step < p.warmup_steps:
        return p.lr * (step + 1) / p.warmup_steps
    progress = (step - p.warmup_steps) / max(1, p.steps - p.warmup_steps)
    return p.lr * (p.min_lr_ratio + (1 - p.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def noise_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *keys) through numpy's SeedSequence (well-mixed, order-sensitive)."""
    hi, lo = np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(hi) << 32 | int(lo))


# --- the step ----------------------------------------------------------------------------------------------------
@dataclass
class LossSums:
    """Loss totals over micro-batches (and ranks), reduced to means for logging."""

    loss: float = 0.0
    batches: int = 0
    text: float = 0.0
    n_text: int = 0
    audio: float = 0.0
    n_audio: int = 0

    def add(self, loss: torch.Tensor, text: tuple[torch.Tensor, int], audio: tuple[torch.Tensor, int]) -> None:
        self.loss += float(loss)
        self.batches += 1
        self.text += float(text[0]) * text[1]
        self.n_text += text[1]
        self.audio += float(audio[0]) * audio[1]
        self.n_audio += audio[1]

    def all_reduce(self, backend: Backend) -> "LossSums":
        t = backend.all_reduce_sum(torch.tensor([self.loss, self.batches, self.text, self.n_text, self.audio,
                                                 self.n_audio], dtype=torch.float64)).tolist()
        return LossSums(t[0], int(t[1]), t[2], int(t[3]), t[4], int(t[5]))

    def means(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}/loss": self.loss / max(self.batches, 1)}
        if self.n_text:
            out[f"{prefix}/text_loss"] = self.text / self.n_text
        if self.n_audio:
            out[f"{prefix}/audio_loss"] = self.audio / self.n_audio
        return out


def _part(logits_BLV: torch.Tensor, batch: TrainBatch) -> tuple[torch.Tensor, int]:
    """The objective's loss on the targets left in `batch`: next-token if it has AR targets, else diffusion.

    Returns (mean, weight): weight = target count for next-token, document count for diffusion (their
    respective batch reductions in `model.losses`).
    """
    if bool(batch.text_targets.any()):
        return text_loss(logits_BLV, batch)
    loss, _, _, n_docs = audio_loss(logits_BLV, batch)
    return loss, n_docs


@torch.no_grad()
def modality_losses(logits_BLV: torch.Tensor, batch: TrainBatch, spec: TokenSpec
                    ) -> tuple[tuple[torch.Tensor, int], tuple[torch.Tensor, int]]:
    """The objective's loss on text-class and on audio-class targets (for `ttt`: its AR and diffusion parts)."""
    audio_BL = spec.is_audio(batch.labels)
    split = {}
    for name, keep_BL in (("text", ~audio_BL), ("audio", audio_BL)):
        split[name] = _part(logits_BLV, dataclasses.replace(
            batch, text_targets=batch.text_targets & keep_BL, eligible=batch.eligible & keep_BL,
            noised=batch.noised & keep_BL))
    return split["text"], split["audio"]


def forward_logits(backend: Backend, batch: TrainBatch) -> torch.Tensor:
    with backend.autocast():
        return backend.model(input_ids=batch.input_ids, doc_ids=batch.doc_ids, mask_kind=batch.mask_kind).logits


def train_step(backend: Backend, micro_batches: list[TrainBatch], spec: TokenSpec, lambda_audio: float
               ) -> tuple[LossSums, float]:
    """One optimizer step on any backend: forward, `ttt_loss`, backward per micro-batch, then clip and update.

    Returns this rank's loss sums and the global gradient norm (before clipping).
    """
    sums = LossSums()
    for batch in micro_batches:
        batch = batch.to(backend.device)
        logits = forward_logits(backend, batch)
        parts = ttt_loss(logits, batch, lambda_audio)
        backend.backward(parts.loss)
        sums.add(parts.loss.detach(), *modality_losses(logits.detach(), batch, spec))
    return sums, backend.step()


@torch.no_grad()
def evaluate(backend: Backend, batches: list[TrainBatch], spec: TokenSpec, lambda_audio: float) -> dict[str, float]:
    """Validation losses over this rank's share of the fixed validation batches, summed over ranks."""
    backend.model.eval()
    sums = LossSums()
    for batch in batches:
        batch = batch.to(backend.device)
        logits = forward_logits(backend, batch)
        sums.add(ttt_loss(logits, batch, lambda_audio).loss, *modality_losses(logits, batch, spec))
    backend.model.train()
    return sums.all_reduce(backend).means("val")


# --- the recipe --------------------------------------------------------------------------------------------------
def resolve_backend(p: TrainParams) -> str:
    """`auto` -> `deepspeed` when CUDA and DeepSpeed are both there, else `torch`."""
    if p.backend != "auto":
        return p.backend
    return "deepspeed" if torch.cuda.is_available() and deepspeed_available() else "torch"


def resolve_attention(p: TrainParams) -> str:
    if p.attn_implementation != "auto":
        return p.attn_implementation
    return "flex_attention" if torch.cuda.is_available() else "sdpa"


def resolve_precision(p: TrainParams) -> str:
    """`auto` -> `bf16` where the device computes in bf16 natively (see `TrainParams.precision`), else `fp32`."""
    if p.precision != "auto":
        return p.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


#: The sources a trained model is a function of (dvc.yaml's code deps of `train`), relative to the repository root.
TRAINING_CODE: tuple[str, ...] = ("model", "stages/train.py", "stages/train_backend.py", "stages/train_checkpoint.py",
                                  "stages/train_metrics.py", "stages/dataset.py")


def code_fingerprint(root: Path = Path(__file__).resolve().parents[1]) -> dict[str, str]:
    """What the code contributes to the resume fingerprint: the sha256 of every training source file.

    Why: `models/ttt` persists across `dvc repro` (a killed run must resume), so when DVC re-runs `train` because
    a loss or model file changed, a fingerprint of config + data alone would "resume" the finished run and record
    the old weights as the new code's output.
    """
    files = sorted(f for entry in TRAINING_CODE
                   for f in ((root / entry).rglob("*.py") if (root / entry).is_dir() else [root / entry])
                   if f.is_file())
    return {f.relative_to(root).as_posix(): _file_sha256(f) for f in files}


def data_fingerprint(shards_dir: Path, spec: TokenSpec) -> dict[str, Any]:
    """What the data side contributes to the resume fingerprint: every train/val shard's sha256 and the token spec."""
    files = sorted(f for split in ("train", "val") for f in (shards_dir / split).glob("shard-*.safetensors"))
    return {"shards": {f"{f.parent.name}/{f.name}": _file_sha256(f) for f in files}, "token_spec": spec.to_dict()}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TrainRecipe:
    """setup() → train() → cleanup(); see the module docstring."""

    def __init__(self, params: TrainParams, seed: int, shards_dir: str | Path, tokenizer_dir: str | Path,
                 out_dir: str | Path, metrics_dir: str | Path, progress: bool = True) -> None:
        self.params, self.seed = params, seed
        self.shards_dir, self.tokenizer_dir = Path(shards_dir), Path(tokenizer_dir)
        self.out_dir, self.metrics_dir = Path(out_dir), Path(metrics_dir)
        self.show_progress = progress
        self.step = 0
        self.tokens_seen = 0
        self.last_metrics: dict[str, float] = {}
        self.metrics: MetricsLog | None = None
        self.backend: Backend | None = None

    # -- setup ----------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        p = self.params
        self.spec = TokenSpec.from_json(self.tokenizer_dir / TOKEN_SPEC_PATH)
        self.objective = p.objective_config()
        self.rank, _, self.world_size = distributed_env()
        self.backend_name, self.attn = resolve_backend(p), resolve_attention(p)
        self.precision = resolve_precision(p)
        self.bf16 = self.precision == "bf16"
        if self.backend_name == "torch" and self.world_size > 1:
            raise ValueError("the torch backend runs one process; launch several with backend: deepspeed")
        train_rows = PackedRows(self.shards_dir / "train")
        self.loader = PackedLoader(train_rows, batch_size=p.micro_batch_size * self.world_size, seed=self.seed)
        self.fingerprint = ckpt.fingerprint({"train": dataclasses.asdict(p), "seed": self.seed,
                                             "precision": self.precision,
                                             "data": data_fingerprint(self.shards_dir, self.spec),
                                             "code": code_fingerprint()})
        resume = self._resumable_checkpoint()
        model = self._model(resume)
        self.ds_config = (deepspeed_config(p.micro_batch_size, p.grad_accum, self.world_size, p.grad_clip,
                                           self.bf16, p.zero_stage, torch.cuda.is_available())
                          if self.backend_name == "deepspeed" else None)
        self.backend = self._make_backend(model)
        if resume is not None:
            self._restore(resume)
        self.val_batches = self._val_batches()
        if self.rank == 0:
            self.metrics = MetricsLog(self.metrics_dir, self.step if resume is not None else None)

    def _resumable_checkpoint(self) -> Path | None:
        """The newest checkpoint of *this* run (same config and data), else None after discarding stale ones."""
        latest = ckpt.latest_checkpoint(self.out_dir)
        if latest is None:
            return None
        if ckpt.read_state(latest).get("fingerprint") == self.fingerprint:
            return latest
        if self.rank == 0:
            ckpt.clear_checkpoints(self.out_dir)
        return None

    def _model(self, resume: Path | None) -> torch.nn.Module:
        from transformers.utils import logging as hf_logging

        from model.audio_embeddings import init_audio_embeddings
        from model.modeling import TttForCausalLM, build_model, load_qwen2_backbone  # transformers: seconds

        hf_logging.disable_progress_bar()  # one "Writing model shards" bar per checkpoint is noise; ours is enough
        p = self.params
        if resume is not None:
            return TttForCausalLM.from_pretrained(resume, attn_implementation=self.attn, dtype=torch.float32)
        if p.qwen_dir:
            model = load_qwen2_backbone(p.qwen_dir, self.spec, self.objective, attn_implementation=self.attn,
                                        dtype=torch.float32)
        else:
            model = build_model(p.model, self.spec, self.objective, attn_implementation=self.attn, seed=self.seed)
        if p.audio_embedding_init == "codec":
            from stages.tokenizers import codec_code_vectors  # the codec stack (polars, soundfile): only when used

            init_audio_embeddings(model, self.spec, codec_code_vectors(self.tokenizer_dir), self.seed)
        return model

    def _make_backend(self, model: torch.nn.Module) -> Backend:
        p = self.params
        if self.backend_name == "torch":
            model = model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        optimizer = make_optimizer(model, p.lr, (p.beta1, p.beta2), p.weight_decay)
        if self.backend_name == "deepspeed":
            return DeepSpeedBackend(model, optimizer, self.ds_config)
        device = next(model.parameters()).device
        return TorchBackend(model, optimizer, device, p.grad_accum, p.grad_clip, self.bf16)

    def _restore(self, path: Path) -> None:
        state = ckpt.read_state(path)
        weights, moments, rng = ckpt.read_tensors(path)
        self.backend.restore(weights, moments, state["step"])
        ckpt.set_rng_state(rng)
        self.loader.load_state_dict(state["loader"])
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.last_metrics = dict(state["metrics"])

    def _val_batches(self) -> list[TrainBatch]:
        """This rank's share of the fixed validation batches, noised once with a fixed seed (comparable evals).

        BANOM is off for validation (`p_clean = 0`) so every batch measures both losses; the batch count is a
        multiple of the world size, since ZeRO-3 ranks must run their forwards together.
        """
        p = self.params
        rows = PackedRows(self.shards_dir / "val")
        n = len(rows) if p.eval_rows == 0 else min(p.eval_rows, len(rows))
        n_batches = n // p.micro_batch_size // self.world_size * self.world_size
        if n_batches == 0:
            raise ValueError(f"{n} validation rows cannot fill one micro-batch of {p.micro_batch_size} per rank")
        cfg = dataclasses.replace(self.objective, p_clean=0.0)
        out = []
        for i in range(self.rank, n_batches, self.world_size):
            items = [rows[j] for j in range(i * p.micro_batch_size, (i + 1) * p.micro_batch_size)]
            cols = {f: torch.stack([item[f] for item in items]) for f in FIELDS}
            out.append(prepare_batch(cols["input_ids"], cols["doc_ids"], cols["role"], self.spec, cfg,
                                     noise_generator(self.seed, VAL_STREAM, i)))
        return out

    # -- train ----------------------------------------------------------------------------------------------------
    def _micro_batches(self, stream: Any) -> tuple[list[TrainBatch], int]:
        """The step's micro-batches for this rank (its slice of each global batch) and the global useful tokens."""
        p = self.params
        lo, hi = self.rank * p.micro_batch_size, (self.rank + 1) * p.micro_batch_size
        out, tokens = [], 0
        for m in range(p.grad_accum):
            rows = next(stream)
            tokens += int((rows["doc_ids"] >= 0).sum())
            out.append(prepare_batch(rows["input_ids"][lo:hi], rows["doc_ids"][lo:hi], rows["role"][lo:hi], self.spec,
                                     self.objective, noise_generator(self.seed, TRAIN_STREAM, self.step, m, self.rank)))
        return out, tokens

    def _rows(self) -> Any:
        while True:  # epoch after epoch; the loader's position moves with every batch handed out
            yield from self.loader

    def train(self) -> dict[str, float]:
        p = self.params
        bar = ProgressBar(p.steps, self.step, enabled=self.show_progress and self.rank == 0)
        try:
            if self.step == 0:
                self.last_metrics = evaluate(self.backend, self.val_batches, self.spec, p.lambda_audio)
                self._log(0, self.last_metrics)
            stream = self._rows()
            rates: list[float] = []
            while self.step < p.steps:
                start = time.perf_counter()
                lr = lr_at(self.step, p)
                self.backend.set_lr(lr)
                micro, tokens = self._micro_batches(stream)
                sums, grad_norm = train_step(self.backend, micro, self.spec, p.lambda_audio)
                seconds = time.perf_counter() - start
                self.step += 1
                self.tokens_seen += tokens
                values = {**sums.all_reduce(self.backend).means("train"), "train/lr": lr,
                          "train/grad_norm": grad_norm, "train/tokens_per_s": tokens / seconds,
                          "train/tokens": float(self.tokens_seen)}
                if self.backend.device.type == "cuda":
                    values["train/peak_mem_gb"] = torch.cuda.max_memory_allocated(self.backend.device) / 2**30
                rates.append(values["train/tokens_per_s"])
                if self.step == p.steps:
                    values["train/tokens_per_s_median"] = statistics.median(rates)
                if self.step % p.eval_every == 0 or self.step == p.steps:
                    values |= evaluate(self.backend, self.val_batches, self.spec, p.lambda_audio)
                self._log(self.step, values)
                self.last_metrics |= values
                if self.step % p.checkpoint_every == 0 or self.step == p.steps:
                    self._checkpoint()
                bar.update(self.step, loss=values["train/loss"], tok_s=values["train/tokens_per_s"],
                           **({"val": values["val/loss"]} if "val/loss" in values else {}))
        finally:
            bar.close()
        return dict(self.last_metrics)

    def _log(self, step: int, values: dict[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.log(step, values)

    def _checkpoint(self) -> None:
        weights, moments = self.backend.full_state()  # collective under DeepSpeed: every rank gathers
        if self.rank != 0:
            return
        state = {"step": self.step, "tokens_seen": self.tokens_seen, "loader": self.loader.state_dict(),
                 "metrics": self.last_metrics,
                 "world_size": self.world_size, "git": git_state(), "fingerprint": self.fingerprint,
                 "noise_seed": {"seed": self.seed, "train_stream": TRAIN_STREAM, "val_stream": VAL_STREAM,
                                "keys": "(seed, stream, step, micro_batch, rank)"},
                 "config": {"train": dataclasses.asdict(self.params), "seed": self.seed, "backend": self.backend_name,
                            "precision": self.precision, "attn_implementation": self.attn,
                            "deepspeed": self.ds_config, "device": str(self.backend.device),
                            "torch": torch.__version__}}
        ckpt.write_checkpoint(self.out_dir, self.step, self.backend.module, weights, moments, state)
        ckpt.prune_checkpoints(self.out_dir, self.params.keep_checkpoints)

    # -- cleanup --------------------------------------------------------------------------------------------------
    def cleanup(self, finished: bool) -> None:
        """Export the final model (when the run finished), close the logger and the process group."""
        if finished and self.rank == 0:
            ckpt.export_model(ckpt.checkpoint_dir(self.out_dir, self.step), self.out_dir)
        if self.metrics is not None:
            self.metrics.close()
        if self.backend is not None:
            self.backend.close()


def run_train(params: TrainParams, seed: int, shards_dir: str | Path, tokenizer_dir: str | Path,
              out_dir: str | Path, metrics_dir: str | Path, progress: bool = True) -> dict[str, float]:
    """Train (or resume) and export `out_dir`; returns the final metrics (the last value of each)."""
    recipe = TrainRecipe(params, seed + SEED_OFFSET, shards_dir, tokenizer_dir, out_dir, metrics_dir, progress)
    finished = False
    try:
        recipe.setup()
        result = recipe.train()
        finished = True
        return result
    finally:
        recipe.cleanup(finished)


def main(argv: list[str] | None = None) -> None:
    """`python -m stages.train …` / `deepspeed --module stages.train …`: the recipe without Prefect."""
    from stages.base import load_base
    from stages.config import load_section, with_overrides

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--shards", default="data/shards", help="pack output (train/ and val/ shards)")
    parser.add_argument("--tokenizer", default="models/tokenizers", help="tokenizers output (text/token_spec.json)")
    parser.add_argument("--out", default="models/ttt", help="model, trainer state and checkpoints")
    parser.add_argument("--metrics", default="reports/train", help="dvclive metrics and plots")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a train param (value read as YAML; repeatable), e.g. --set steps=4800")
    parser.add_argument("--seed", type=int, default=None, help="override base.seed for this run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher (LOCAL_RANK wins)")
    args = parser.parse_args(argv)
    params = with_overrides(load_section(args.params, "train", TrainParams), args.overrides,
                            f"{args.params}:train --set")
    seed = load_base(args.params).seed if args.seed is None else args.seed
    run_train(params, seed, args.shards, args.tokenizer, args.out, args.metrics, progress=not args.no_progress)


if __name__ == "__main__":
    main()
