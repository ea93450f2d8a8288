"""Packed rows with the block-sparse mask vs one padded row per document (the reference implementation's layout).

Both paths train the same model on the same documents with the same noise (one `prepare_batch` draw, re-laid out
for the padded path) and the same modality-aware mask semantics:
- `packed`: the fixed-length packed rows, mask from `doc_ids` — FlexAttention `BlockMask` on CUDA, dense boolean
  SDPA mask on CPU (FlexAttention has no CPU backward);
- `padded`: every document in its own row, right-padded to the longest document, dense boolean SDPA mask.
Figure: forward + loss + backward throughput in real (non-padding) tokens per second, and peak memory
(CUDA: `max_memory_allocated`; CPU: peak RSS growth during the timed steps, each path in a fresh process).

Run::

    .venv/bin/python benchmarks/attention.py          # CPU, tiny preset -> reports/benchmarks/attention.json
    python benchmarks/attention.py --device cuda --preset gpu --seq-len 4096 --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import write_json_atomic  # noqa: E402
from model.losses import ttt_loss  # noqa: E402
from model.modeling import build_model  # noqa: E402
from model.noising import TrainBatch, prepare_batch  # noqa: E402
from model.objective import ObjectiveConfig  # noqa: E402
from model.testing import random_packed_batch, toy_spec  # noqa: E402
from model.vocab import TokenSpec  # noqa: E402

def spec_of(args: argparse.Namespace) -> TokenSpec:
    return toy_spec(text_vocab=args.text_vocab, audio_size=args.audio_size)


ROW_FIELDS = ("input_ids", "labels", "doc_ids", "role", "text_targets", "eligible", "noised", "mask_prob")


def packed_batch(args: argparse.Namespace) -> TrainBatch:
    spec = spec_of(args)
    rows = random_packed_batch(spec, args.batch, args.seq_len, torch.Generator().manual_seed(args.seed))
    cfg = ObjectiveConfig(p_clean=0.0)  # always noised: both losses run
    return prepare_batch(*rows, spec, cfg, torch.Generator().manual_seed(args.seed + 1))


def one_row_per_document(batch: TrainBatch, pad_id: int) -> TrainBatch:
    """Re-lay a packed batch as one right-padded row per document (doc id 0, padding -1), same tokens and noise."""
    pieces = [(b, batch.doc_ids[b] == d) for b in range(batch.doc_ids.shape[0])
              for d in range(int(batch.doc_ids[b].max()) + 1)]
    width = max(int(sel.sum()) for _, sel in pieces)
    pad = {"input_ids": pad_id, "labels": pad_id, "doc_ids": -1, "role": 0, "text_targets": False,
           "eligible": False, "noised": False, "mask_prob": 1.0}
    out = {}
    for f in ROW_FIELDS:
        src = getattr(batch, f)
        dst = torch.full((len(pieces), width), pad[f], dtype=src.dtype)
        for i, (b, sel) in enumerate(pieces):
            n = int(sel.sum())
            dst[i, :n] = 0 if f == "doc_ids" else src[b, sel]
        out[f] = dst
    return TrainBatch(**out, mask_kind=batch.mask_kind, clean=batch.clean)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_path(args: argparse.Namespace, path: str) -> dict[str, Any]:
    """Time `args.steps` forward+loss+backward steps of one path (after `args.warmup` untimed steps)."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    batch = packed_batch(args)
    if path == "padded":
        batch = one_row_per_document(batch, spec_of(args).pad_id)
    batch = batch.to(device)
    attn = "flex_attention" if path == "packed" and device.type == "cuda" else "sdpa"
    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    model = build_model(args.preset, spec_of(args), attn_implementation=attn, seed=args.seed,
                        **overrides).to(device).train()
    dtype = torch.bfloat16 if device.type == "cuda" else None

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(input_ids=batch.input_ids, doc_ids=batch.doc_ids, mask_kind=batch.mask_kind)
            ttt_loss(out.logits, batch).loss.backward()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_mb()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    real = int((batch.doc_ids >= 0).sum())
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before)
    return {"path": path, "attention": attn, "rows": batch.input_ids.shape[0], "row_len": batch.input_ids.shape[1],
            "real_tokens": real, "positions": batch.input_ids.numel(), "step_s": round(seconds, 4),
            "tokens_per_s": round(real / seconds, 1), "peak_mem_mb": round(peak, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--layers", type=int, default=0, help="override the preset's layer count (0: keep)")
    ap.add_argument("--batch", type=int, default=4, help="packed rows")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--text-vocab", type=int, default=4000)
    ap.add_argument("--audio-size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/attention.json"))
    ap.add_argument("--only", choices=("packed", "padded"), help=argparse.SUPPRESS)  # child process: one path
    args = ap.parse_args()
    if args.only:
        print(json.dumps(run_path(args, args.only)))
        return
    results = {}
    for path in ("packed", "padded"):  # a fresh process per path, so peak memory is that path's alone
        cmd = [sys.executable, __file__, *sys.argv[1:], "--only", path]
        results[path] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                                   .strip().splitlines()[-1])
        print(json.dumps(results[path]))
    report = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "only")},
        "paths": results,
        "speedup_packed_over_padded": round(results["packed"]["tokens_per_s"] / results["padded"]["tokens_per_s"], 3),
        "memory_ratio_packed_over_padded": round(results["packed"]["peak_mem_mb"]
                                                 / max(results["padded"]["peak_mem_mb"], 1e-6), 3),
    }
    print(f"packed/padded throughput x{report['speedup_packed_over_padded']}, "
          f"peak memory x{report['memory_ratio_packed_over_padded']}")
    write_json_atomic(report, args.out)


if __name__ == "__main__":
    main()
