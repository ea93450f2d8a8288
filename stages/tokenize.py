"""tokenize: audio codes for every validated utterance, one token shard per audio shard, resumable.

    dvc repro tokenize
    python -m flows.tokenize --params params.yaml --validated data/validated --audio data/audio \\
        --tokenizers models/tokenizers --out data/tokens

Each audio shard's validated clips are decoded and encoded in one `encode_batch` call (the codec sorts them by
length and analyses ~60 s padded groups with every core torch may use). Output layout (`out_dir`):
- `shards/shard-NNNNN.npy`: int32 codes of all the shard's utterances, concatenated (load with
  `allow_pickle=False`; `np.load(..., mmap_mode="r")` reads one utterance without the rest).
- `shards/shard-NNNNN.parquet`: `utt_id`, `offset`, `length` into that array.
- `shards/shard-NNNNN.done.json`: the shard's key (code version, codec fingerprint, utterance ids and audio
  hashes) and counts; written last, so a killed run redoes only unfinished or stale shards.
- `index.parquet`: every utterance's `utt_id`, `split`, `shard` (npy path relative to `out_dir`), `offset`,
  `length`, `duration_s`; `summary.json`: counts and hours.
Every output is a pure function of the inputs (DVC hashes them): the encoding speed is returned by
`tokenize_shard` for the flow's log and the benchmark, never written here.

Text is not pre-tokenised here: the pack stage encodes each text piece as it lays documents out (a fast
tokenizer does that in microseconds), so there is one place where text becomes ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import polars as pl

from stages import io
from stages.audio_io import SAMPLE_RATE
from stages.audio_shards import read_clips, shard_groups
from stages.audio_codec import SpeechCodec
from stages.tokenizers import codec_fingerprint, load_codec

#: Bump when the codes written for the same inputs and codec change, so resumed runs redo stale shards.
CODE_VERSION = "1"
CODE_DTYPE = np.int32

INDEX_SCHEMA = {"utt_id": pl.String, "split": pl.String, "shard": pl.String, "offset": pl.Int64,
                "length": pl.Int64, "duration_s": pl.Float64}


@dataclass(frozen=True)
class TokenizeParams:
    """`tokenize` section of params.yaml."""

    max_workers: int = 2
    """Shards encoded at once (workers x torch_threads = the cores you give the stage)."""
    torch_threads: int = 1
    """Intra-op threads per worker. One thread per worker scales best: the codec's FFTs and matmuls are too small
    for intra-op threads to pay off (`benchmarks/tokenize_speed.py`: 1 x 2 runs at about half the speed of 2 x 1)."""
    task_runner: Literal["thread", "process", "dask", "ray"] = "thread"
    """Prefect task runner the flow maps shards with."""

    def __post_init__(self) -> None:
        if self.max_workers < 1 or self.torch_threads < 1:
            raise ValueError("max_workers and torch_threads must be at least 1")


@dataclass(frozen=True)
class TokenizeJob:
    """One audio shard's validated utterances (plain fields, so jobs pickle cheaply to workers)."""

    name: str
    audio_shard: str
    utt_ids: tuple[str, ...]
    key: str


def plan_jobs(validated_dir: str | Path, tokenizers_dir: str | Path) -> list[TokenizeJob]:
    """One job per audio shard that holds validated clips, keyed by its content and the codec."""
    manifest = pl.read_parquet(Path(validated_dir) / "audio.parquet", columns=["utt_id", "shard", "sha256"])
    hashes = dict(zip(manifest["utt_id"], manifest["sha256"]))
    fingerprint = codec_fingerprint(tokenizers_dir)
    jobs = []
    for shard, utt_ids in shard_groups(manifest):
        key = io.sha256_text(CODE_VERSION, fingerprint, *(f"{u}:{hashes[u]}" for u in utt_ids))
        jobs.append(TokenizeJob(Path(shard).stem, shard, tuple(utt_ids), key))
    return jobs


_CODECS: dict[str, SpeechCodec] = {}


def cached_codec(tokenizers_dir: str) -> SpeechCodec:
    """The codec of `tokenizers_dir`, loaded once per process and reused by every shard that process encodes."""
    if tokenizers_dir not in _CODECS:
        _CODECS[tokenizers_dir] = load_codec(tokenizers_dir)
    return _CODECS[tokenizers_dir]


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class ShardResult(NamedTuple):
    """What one `tokenize_shard` call did: utterances encoded (0 when the shard was already done), their audio
    seconds and the seconds `encode_batch` took."""

    utterances: int
    audio_s: float
    encode_s: float


def tokenize_shard(job: TokenizeJob, audio_dir: str, tokenizers_dir: str, out_dir: str,
                   torch_threads: int) -> ShardResult:
    """Encode one shard unless a finished shard with the same key exists."""
    import torch

    shards = Path(out_dir) / "shards"
    done = shards / f"{job.name}.done.json"
    if done.is_file() and json.loads(done.read_text()).get("key") == job.key:
        return ShardResult(0, 0.0, 0.0)
    torch.set_num_threads(torch_threads)
    codec = cached_codec(tokenizers_dir)
    ids, pcms = zip(*read_clips(audio_dir, job.audio_shard, job.utt_ids)) if job.utt_ids else ((), ())
    start = time.perf_counter()
    codes = codec.encode_batch(list(pcms))
    seconds = time.perf_counter() - start
    lengths = np.array([len(c) for c in codes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(codes) else lengths
    flat = np.concatenate(codes).astype(CODE_DTYPE) if codes else np.zeros(0, dtype=CODE_DTYPE)
    io.write_bytes(_npy_bytes(flat), shards / f"{job.name}.npy")
    io.write_parquet(pl.DataFrame({"utt_id": list(ids), "offset": offsets, "length": lengths}),
                     shards / f"{job.name}.parquet")
    audio_s = sum(len(p) for p in pcms) / SAMPLE_RATE
    io.write_json({"key": job.key, "utterances": len(ids), "codes": int(lengths.sum()), "audio_s": round(audio_s, 3)},
                  done)
    return ShardResult(len(ids), audio_s, seconds)


def collect_index(jobs: list[TokenizeJob], validated_dir: str | Path, out_dir: str | Path) -> dict[str, object]:
    """Join the finished shards into `index.parquet` and `summary.json`; drop shards no job names."""
    out = Path(out_dir)
    shards = out / "shards"
    wanted = {j.name for j in jobs}
    for f in shards.glob("shard-*"):
        if f.name.split(".")[0] not in wanted:
            f.unlink()
    parts, audio_s = [], 0.0
    for job in jobs:
        done = json.loads((shards / f"{job.name}.done.json").read_text())
        if done["key"] != job.key:
            raise RuntimeError(f"token shard {job.name} is stale; rerun tokenize")
        audio_s += done["audio_s"]
        parts.append(pl.read_parquet(shards / f"{job.name}.parquet").with_columns(
            pl.lit(f"shards/{job.name}.npy").alias("shard")))
    manifest = pl.read_parquet(Path(validated_dir) / "audio.parquet", columns=["utt_id", "split", "duration_s"])
    index = (pl.concat(parts) if parts else pl.DataFrame(schema={k: INDEX_SCHEMA[k] for k in
                                                                 ("utt_id", "offset", "length", "shard")}))
    index = index.join(manifest, on="utt_id", how="left").select(list(INDEX_SCHEMA)).cast(INDEX_SCHEMA).sort("utt_id")
    io.write_parquet(index, out / "index.parquet")
    summary = {"shards": len(jobs), "utterances": index.height, "codes": int(index["length"].sum()),
               "audio_hours": round(audio_s / 3600, 4)}
    io.write_json(summary, out / "summary.json")
    return summary


def run_tokenize(params: TokenizeParams, validated_dir: str | Path, audio_dir: str | Path,
                 tokenizers_dir: str | Path, out_dir: str | Path,
                 map_shards: Callable[[Callable[[TokenizeJob], int], Iterable[TokenizeJob]], Iterable[int]] = map,
                 ) -> dict[str, object]:
    """Plan, encode every shard (through `map_shards`, default in-process) and collect the index."""
    jobs = plan_jobs(validated_dir, tokenizers_dir)
    list(map_shards(_ShardWorker(str(audio_dir), str(tokenizers_dir), str(out_dir), params.torch_threads), jobs))
    return collect_index(jobs, validated_dir, out_dir)


@dataclass(frozen=True)
class _ShardWorker:
    """A picklable `tokenize_shard` bound to its directories."""

    audio_dir: str
    tokenizers_dir: str
    out_dir: str
    torch_threads: int

    def __call__(self, job: TokenizeJob) -> ShardResult:
        return tokenize_shard(job, self.audio_dir, self.tokenizers_dir, self.out_dir, self.torch_threads)
