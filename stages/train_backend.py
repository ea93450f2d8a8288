"""Training backends: where the forward runs and how a step updates the weights. One interface, two implementations.

- `TorchBackend`: plain PyTorch AdamW in one process, on the CPU (or one CUDA device); `bf16` is autocast over fp32
  weights. The CPU path of the tiny profile and of every test.
- `DeepSpeedBackend`: DeepSpeed ZeRO (stage 2 default, 3 for models whose states do not fit one GPU), bf16
  weights with fp32 masters, gradient accumulation and clipping inside the engine, data parallel over every rank
  the `deepspeed` launcher started. DeepSpeed is an optional extra (`pip install -e .[gpu]`) imported only here,
  only when this backend is built. It also runs on the CPU in one process (gloo), which is how it is tested.

Both wrap the *same* `torch.optim.AdamW` (built by `make_optimizer`; DeepSpeed receives it as a client optimizer
and shards its state), so the update rule, the weight-decay groups and the optimizer-state layout are one thing.
Checkpoints hold the *full* state (fp32 master weights, AdamW moments, keyed by parameter name; see
`stages.train_checkpoint`), never DeepSpeed's per-rank partitions, so a run resumes on any number of GPUs and on
either backend, and loading never unpickles.

The step contract (`stages.train.train_step` drives it): `set_lr(lr)` once, then `backward(loss)` for each
micro-batch (the micro-batch mean), then `step()` to clip, update and zero the gradients; it returns the
pre-clipping global gradient norm.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn

#: AdamW moments kept per parameter (torch's names, which DeepSpeed's fragment API uses too).
MOMENTS: tuple[str, ...] = ("exp_avg", "exp_avg_sq")


class Backend(Protocol):
    """What the training loop needs from a backend (see the module docstring for the step contract)."""

    model: nn.Module
    """What to call for a forward: the DeepSpeed engine or the plain module."""
    module: nn.Module
    """The underlying `TttForCausalLM` (its config, its named parameters)."""
    device: torch.device
    rank: int
    world_size: int

    def autocast(self) -> contextlib.AbstractContextManager: ...
    def set_lr(self, lr: float) -> None: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> float: ...
    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor: ...
    def full_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]: ...
    def restore(self, weights: dict[str, torch.Tensor], moments: dict[str, torch.Tensor], step: int) -> None: ...
    def close(self) -> None: ...


def moment_key(moment: str, name: str) -> str:
    """Key of one parameter's AdamW moment in `optimizer.safetensors`."""
    return f"{moment}.{name}"


def make_optimizer(model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norm gains and biases are not decayed), in a fixed group order."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.dim() >= 2]
    no_decay = [p for n, p in named if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)


def _adam_state(step: int, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> dict[str, torch.Tensor]:
    """One parameter's state in torch AdamW's own layout (`step` a float32 CPU scalar, as `_init_group` makes it)."""
    return {"step": torch.tensor(float(step), dtype=torch.float32), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def _snapshot(t: torch.Tensor) -> torch.Tensor:
    """An fp32 CPU copy that later updates cannot change (`.float().cpu()` aliases an fp32 CPU tensor)."""
    return t.detach().to(device="cpu", dtype=torch.float32, copy=True)


def _named_trainable(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    return ((n, p) for n, p in module.named_parameters() if p.requires_grad)


class TorchBackend:
    """Plain PyTorch in one process: AdamW, manual gradient accumulation, `clip_grad_norm_`, optional bf16 autocast."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.AdamW, device: torch.device, grad_accum: int,
                 grad_clip: float, bf16: bool) -> None:
        self.module = self.model = model.to(device)
        self.optimizer = optimizer
        self.device = device
        self.rank, self.world_size = 0, 1
        self._grad_accum, self._grad_clip, self._bf16 = grad_accum, grad_clip, bf16

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self._grad_accum).backward()  # the step's gradient is the mean over its micro-batches

    def step(self) -> float:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self._grad_clip if self._grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def full_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        weights, moments = {}, {}
        for name, p in _named_trainable(self.module):
            weights[name] = _snapshot(p)
            state = self.optimizer.state.get(p, {})
            for m in MOMENTS:
                if m in state:
                    moments[moment_key(m, name)] = _snapshot(state[m])
        return weights, moments

    def restore(self, weights: dict[str, torch.Tensor], moments: dict[str, torch.Tensor], step: int) -> None:
        with torch.no_grad():
            for name, p in _named_trainable(self.module):
                p.copy_(weights[name])
                if step > 0:
                    self.optimizer.state[p] = _adam_state(step, *(moments[moment_key(m, name)].to(p) for m in MOMENTS))

    def close(self) -> None:
        return None


def deepspeed_config(micro_batch_size: int, grad_accum: int, world_size: int, grad_clip: float, bf16: bool,
                     zero_stage: int, cuda: bool) -> dict[str, Any]:
    """The DeepSpeed config, derived from the train params (no separate JSON to drift; saved in every checkpoint)."""
    zero: dict[str, Any] = {"stage": zero_stage, "contiguous_gradients": True,
                            "overlap_comm": cuda}  # overlap needs CUDA streams
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch_size * grad_accum * world_size,
        "gradient_clipping": grad_clip,
        "bf16": {"enabled": bf16},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,  # the client optimizer is torch's AdamW (make_optimizer)
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def distributed_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) from the launcher's environment; one process when nothing is set."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def single_process_env() -> None:
    """Make a launcher-less run look like rank 0 of 1 (else DeepSpeed goes looking for MPI; DESIGN §4).

    Only fills what is missing, so under the `deepspeed` launcher (which sets every variable) it changes nothing.
    """
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


class DeepSpeedBackend:
    """A DeepSpeed engine over the client AdamW; ZeRO shards the optimizer state (and at stage 3 the weights)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.AdamW, config: dict[str, Any]) -> None:
        import deepspeed
        from deepspeed import comm as dist

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        cuda = torch.cuda.is_available()
        single_process_env()  # no-op under the launcher, which sets all of it
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        self._dist, self._engine, self._optimizer = dist, engine, optimizer
        self.model, self.module = engine, engine.module
        self.device = torch.device(engine.device) if not isinstance(engine.device, torch.device) else engine.device
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self._materialise_optimizer_state()

    def _flat_partitions(self) -> list[torch.Tensor]:
        """The fp32 tensors this rank's AdamW steps. ZeRO 1/2 leave them in the param groups; ZeRO-3 puts each
        sub-group's partition (`fp32_partitioned_groups_flat`) into its group only while stepping it."""
        zero3 = getattr(self._engine.optimizer, "fp32_partitioned_groups_flat", None)
        if zero3 is not None:
            return list(zero3)
        return [flat for group in self._optimizer.param_groups for flat in group["params"]]

    def _materialise_optimizer_state(self) -> None:
        """Create AdamW's state for every flat fp32 partition now (torch's layout, step 0) and link it to the
        parameter fragments.

        Why: torch creates the state lazily at the first step, and DeepSpeed 0.19 links fragments to it right
        after stepping the *first* param group, before the others have state, and never again — the moments of
        every other group (here: the no-decay group) are then unreachable through the fragment API that
        `full_state` and `restore` use. Pre-created zero state is exactly what AdamW's first step would create.
        """
        for flat in self._flat_partitions():
            self._optimizer.state[flat] = _adam_state(0, torch.zeros_like(flat), torch.zeros_like(flat))
        link = getattr(self._engine.optimizer, "_lazy_init_hp_params_optimizer_state", None)
        if link is not None:  # ZeRO 1/2 link fragments to the state once; stage 3 reads the state directly
            link()

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # the engine already holds bf16 weights when bf16 is on

    def set_lr(self, lr: float) -> None:
        for group in self._optimizer.param_groups:  # DeepSpeed steps the client optimizer's own groups
            group["lr"] = lr

    def backward(self, loss: torch.Tensor) -> None:
        # The engine divides by the accumulation steps itself and only updates on the boundary micro-batch;
        # it must see `step()` after every micro-batch to count them.
        self._engine.backward(loss)
        self._engine.step()

    def step(self) -> float:
        norm = self._engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        out = values.to(self.device)
        self._dist.all_reduce(out)
        return out.cpu()

    def full_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Gather the fp32 masters and moments of every parameter (collective: every rank must call it)."""
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        weights, moments = {}, {}
        for name, p in _named_trainable(self.module):
            weights[name] = _snapshot(safe_get_full_fp32_param(p))
            for m in MOMENTS:
                value = safe_get_full_optimizer_state(p, m)
                if value is not None:
                    moments[moment_key(m, name)] = _snapshot(value)
        return weights, moments

    def restore(self, weights: dict[str, torch.Tensor], moments: dict[str, torch.Tensor], step: int) -> None:
        """Write full fp32 masters and moments back into this rank's partitions, and the step count.

        The module was loaded from the same weights before `deepspeed.initialize`, so its bf16 copies already
        equal the masters rounded; the masters themselves are rebuilt from the bf16 copies at initialisation and
        are overwritten here to restore their full precision.
        """
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

        for flat in self._flat_partitions():
            self._optimizer.state[flat]["step"].fill_(float(step))
        for name, p in _named_trainable(self.module):
            safe_set_full_fp32_param(p, weights[name].to(self.device))
            if step > 0:
                for m in MOMENTS:
                    safe_set_full_optimizer_state(p, moments[moment_key(m, name)].to(self.device), m)

    def close(self) -> None:
        self._dist.barrier()
        self._dist.destroy_process_group()


def deepspeed_available() -> bool:
    """Whether the optional DeepSpeed extra is installed (without importing it: that costs seconds)."""
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


#: /proc/cpuinfo flags of CPUs with bf16 arithmetic (AVX512-BF16 dot products, AMX tiles); others emulate bf16.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 matrix products natively (Linux `cpuinfo` flags; False where unreadable).

    Why not `torch.ops.mkldnn._is_mkldnn_bf16_supported()`: it is also true on plain AVX-512, where oneDNN emulates
    bf16 and a training step is slower than in fp32.
    """
    try:
        with open(cpuinfo) as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return not NATIVE_BF16_FLAGS.isdisjoint(flags)
