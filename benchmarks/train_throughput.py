"""Training throughput: full optimizer steps on packed rows vs the same documents padded one per row.

Both paths run `stages.train.train_step` (forward, `ttt_loss`, backward, clip, AdamW) on the torch backend with
the same model, the same documents and the same noise:
- `packed`: fixed-length packed rows, the mask derived from `doc_ids` — FlexAttention `BlockMask` on CUDA, dense
  boolean SDPA mask on the CPU (FlexAttention has no CPU backward);
- `padded`: every document in its own row, right-padded to the longest one, dense-mask SDPA (the reference
  implementation's layout; `benchmarks.attention.one_row_per_document`).
Figures: step time, useful (non-padding) tokens per second, and on CUDA the peak memory and MFU = model FLOPs of
the useful tokens / step time / the device's dense bf16 peak (`train_flops`; FLOPs spent on padding do not count).
The CPU has no reliable peak, so no MFU there.

Rows: the first `--batch` rows of a real pack output (`--shards data/shards --tokenizer models/tokenizers`),
else `model.testing.random_packed_batch` rows over a vocabulary the size of the tiny profile's (4096 text ids,
4096 audio codes) with document lengths like the embedded corpus's.

    .venv/bin/python -m benchmarks.train_throughput                     # CPU, tiny preset -> reports/benchmarks/
    .venv/bin/python -m benchmarks.train_throughput --shards data/shards --tokenizer models/tokenizers
    python -m benchmarks.train_throughput --device cuda --preset gpu --seq-len 2048 --batch 8 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.attention import one_row_per_document  # noqa: E402
from benchmarks.results import write_json_atomic  # noqa: E402
from model.modeling import build_model  # noqa: E402
from model.noising import TrainBatch, prepare_batch  # noqa: E402
from model.objective import ObjectiveConfig  # noqa: E402
from model.testing import random_packed_batch, toy_spec  # noqa: E402
from model.vocab import TokenSpec  # noqa: E402
from stages.train import TOKEN_SPEC_PATH, noise_generator, train_step  # noqa: E402
from stages.train_backend import TorchBackend, make_optimizer  # noqa: E402

#: Dense bf16 tensor-core peak (FLOP/s) by device-name fragment; MFU is reported only for these.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


def train_flops(config: Any, doc_lengths: list[int]) -> float:
    """Model FLOPs of one training step over the given documents (forward + backward = 3 x forward).

    6 x (non-embedding weights) per token, 6 x d x V per token for the LM head, and 12 x layers x d x len^2 per
    document for attention scores and values (PaLM's 12·l·d·T per token with T = the document, not the row, and no
    causal discount). Padding contributes nothing.
    """
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * ff
    tokens = sum(doc_lengths)
    return 6.0 * (layers * per_layer + d * config.vocab_size) * tokens + 12.0 * layers * d * sum(
        n * n for n in doc_lengths)


def doc_lengths(batch: TrainBatch) -> list[int]:
    return [int((row == d).sum()) for row in batch.doc_ids for d in range(int(row.max()) + 1)]


def load_rows(args: argparse.Namespace) -> tuple[TokenSpec, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    if args.shards:
        from stages.dataset import FIELDS, PackedRows

        spec = TokenSpec.from_json(Path(args.tokenizer) / TOKEN_SPEC_PATH)
        rows = PackedRows(Path(args.shards) / "train")
        items = [rows[i] for i in range(args.batch)]
        return spec, tuple(torch.stack([item[f] for item in items]) for f in FIELDS)  # type: ignore[return-value]
    spec = toy_spec(text_vocab=4096, audio_size=4096)
    return spec, random_packed_batch(spec, args.batch, args.seq_len, torch.Generator().manual_seed(args.seed),
                                     max_text=60, max_audio=200)


def write_profile(out: Path, step: Callable[[], object], sync: Callable[[], None], device: torch.device) -> None:
    """The top operators of two more steps under `torch.profiler`, by self time on the device, as a text table.

    Why: a throughput figure says *that* a path is slow; this says where its time goes (on CUDA: kernels, with the
    FlexAttention block-mask build and the flex kernels under their own names), for the next session with a GPU.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            step()
        sync()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=70))


def run_path(args: argparse.Namespace, spec: TokenSpec, batch: TrainBatch, path: str) -> dict[str, Any]:
    device = torch.device(args.device)
    attn = "flex_attention" if path == "packed" and device.type == "cuda" else "sdpa"
    model = build_model(args.preset, spec, attn_implementation=attn, seed=args.seed).to(device)
    backend = TorchBackend(model, make_optimizer(model, 1e-4, (0.9, 0.95), 0.1), device, 1, 1.0,
                           args.precision == "bf16")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        train_step(backend, [batch], spec, 1.0)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(backend, [batch], spec, 1.0)
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    if args.profile_dir:
        write_profile(args.profile_dir / f"{path}.txt", lambda: train_step(backend, [batch], spec, 1.0), sync,
                      device)
    useful = int((batch.doc_ids >= 0).sum())
    flops = train_flops(model.config, doc_lengths(batch))
    peak = next((v for k, v in PEAK_BF16.items() if k in torch.cuda.get_device_name()), None) \
        if device.type == "cuda" else None
    return {"path": path, "attention": attn, "rows": batch.input_ids.shape[0], "row_len": batch.input_ids.shape[1],
            "useful_tokens": useful, "positions": batch.input_ids.numel(), "step_s": round(seconds, 4),
            "useful_tokens_per_s": round(useful / seconds, 1), "model_tflops_per_s": round(flops / seconds / 1e12, 4),
            "mfu": round(flops / seconds / peak, 4) if peak else None,
            "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--preset", default="tiny", help="model size preset (tiny, gpu)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--batch", type=int, default=4, help="packed rows per step")
    ap.add_argument("--seq-len", type=int, default=1024, help="row length of random rows (real rows keep theirs)")
    ap.add_argument("--shards", default="", help="pack output to take real rows from (default: random rows)")
    ap.add_argument("--tokenizer", default="models/tokenizers", help="tokenizers output (with --shards)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per path")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per path (compilation, allocator)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile-dir", type=Path, default=None,
                    help="also profile two steps of each path and write <dir>/<path>.txt (top operators)")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/train_throughput.json"))
    args = ap.parse_args()

    spec, rows = load_rows(args)
    packed = prepare_batch(*rows, spec, ObjectiveConfig(p_clean=0.0), noise_generator(args.seed, 0))
    results = {}
    for path, batch in (("packed", packed), ("padded", one_row_per_document(packed, spec.pad_id))):
        results[path] = run_path(args, spec, batch, path)
        print(json.dumps(results[path]))
    speedup = results["packed"]["useful_tokens_per_s"] / results["padded"]["useful_tokens_per_s"]
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{torch.get_num_threads()}",
              "torch": torch.__version__, "rows": "real" if args.shards else "random",
              "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "paths": results, "speedup_packed_over_padded": round(speedup, 3)}
    print(f"packed {results['packed']['useful_tokens_per_s']} useful tok/s, padded "
          f"{results['padded']['useful_tokens_per_s']}: x{speedup:.2f}")
    write_json_atomic(report, args.out)


if __name__ == "__main__":
    main()
