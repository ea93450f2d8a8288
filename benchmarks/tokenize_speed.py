"""Audio tokenization speed of the tokenize stage, as multiples of real time, for several core layouts.

Runs the stage's own per-shard work (`stages.tokenize.tokenize_shard`: read the shard, decode FLAC, batched
`encode_batch`, write npy + parquet) over the first `--shards` audio shards, in fresh worker processes, once per
layout `workers x torch_threads`. Figures per layout: worker start-up (spawn, imports, codec load; paid once per
stage run), wall x real time once the workers are warm (audio seconds / wall seconds, including shard reading,
FLAC decoding and writing) and encode-only x real time per worker (audio seconds / the codec's own seconds,
summed over workers). The stage's target is >= 100x real time on 2 cores.

Run (after `dvc repro tokenizers`, or on any validated manifest + audio shards + tokenizers dir)::

    .venv/bin/python benchmarks/tokenize_speed.py                        # -> reports/benchmarks/tokenize_speed.json
    .venv/bin/python benchmarks/tokenize_speed.py --validated /tmp/v --audio /tmp/a --tokenizers /tmp/t --shards 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from stages.tokenize import plan_jobs, tokenize_shard  # noqa: E402

#: WORKERSxTHREADS:POOL — `process` workers are separate processes, `thread` workers share one (like the flow's
#: default thread task runner, which loads the codec once).
DEFAULT_LAYOUTS = ("1x1:process", "1x2:process", "2x1:process", "2x1:thread")


def _warm(tokenizers: str, threads: int) -> None:
    """Pool initializer: import, set the thread count and load the codec before the clock starts."""
    import torch

    from stages.tokenize import cached_codec

    torch.set_num_threads(threads)
    cached_codec(tokenizers)


def run_layout(jobs, workers: int, threads: int, pool_kind: str, audio: str, tokenizers: str) -> dict[str, float]:
    """Tokenize `jobs` on `workers` warm workers of `threads` torch threads each; start-up, wall, encode seconds."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        if pool_kind == "process":
            executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm,
                                           initargs=(tokenizers, threads))
        else:
            executor = ThreadPoolExecutor(workers, initializer=_warm, initargs=(tokenizers, threads))
        with executor as pool:
            list(pool.map(time.sleep, [0.5] * workers))  # every worker has started and run its initializer
            warm = time.perf_counter()
            results = list(pool.map(tokenize_shard, jobs, [audio] * len(jobs), [tokenizers] * len(jobs),
                                    [out] * len(jobs), [threads] * len(jobs)))
            wall = time.perf_counter() - warm
        done = [json.loads((Path(out) / "shards" / f"{j.name}.done.json").read_text()) for j in jobs]
    return {"startup_s": warm - start - 0.5, "wall_s": wall, "encode_s": sum(r.encode_s for r in results),
            "audio_s": sum(r.audio_s for r in results), "codes": sum(d["codes"] for d in done)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--validated", default="data/validated")
    parser.add_argument("--audio", default="data/audio")
    parser.add_argument("--tokenizers", default="models/tokenizers")
    parser.add_argument("--shards", type=int, default=6, help="audio shards to tokenize per layout")
    parser.add_argument("--layouts", nargs="+", default=list(DEFAULT_LAYOUTS), help="WORKERSxTHREADS:POOL, e.g. 2x1:thread")
    parser.add_argument("--out", default="reports/benchmarks/tokenize_speed.json")
    args = parser.parse_args()

    jobs = plan_jobs(args.validated, args.tokenizers)[:args.shards]
    results = []
    for layout in args.layouts:
        shape, _, pool_kind = layout.partition(":")
        workers, threads = (int(x) for x in shape.split("x"))
        load = os.getloadavg()[0]
        r = run_layout(jobs, workers, threads, pool_kind or "process", args.audio, args.tokenizers)
        results.append({"workers": workers, "torch_threads": threads, "pool": pool_kind or "process",
                        "load_avg_before": round(load, 1), "shards": len(jobs),
                        "clips": sum(len(j.utt_ids) for j in jobs), "audio_s": round(r["audio_s"], 1),
                        "codes": r["codes"], "startup_s": round(r["startup_s"], 1), "wall_s": round(r["wall_s"], 2),
                        "wall_x_real_time": round(r["audio_s"] / r["wall_s"], 1),
                        "encode_x_real_time": round(r["audio_s"] / r["encode_s"], 1)})
        print(f"{layout}: {results[-1]}", flush=True)
    codec_config = Path(args.tokenizers) / "audio" / "codec_config.json"
    report = {"benchmark": "tokenize", "cpu_count": os.cpu_count(), "results": results,
              "codec": json.loads(codec_config.read_text())["config"] if codec_config.is_file() else "external",
              "manifest_clips": pl.read_parquet(Path(args.validated) / "audio.parquet").height}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print("| workers x threads (pool) | load avg | audio (s) | start-up (s) | wall (s) | wall x RT | encode x RT/worker |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} x {r['torch_threads']} ({r['pool']}) | {r['load_avg_before']} | {r['audio_s']} | "
              f"{r['startup_s']} | {r['wall_s']} | {r['wall_x_real_time']} | {r['encode_x_real_time']} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
