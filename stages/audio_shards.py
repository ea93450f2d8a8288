"""Reading clips back out of the synthesize stage's audio shards, one shard at a time.

The audio manifest's `shard` column names a parquet file (`shards/shard-NNNNN.parquet`, relative to the audio
directory) of FLAC bytes keyed by `utt_id`. Readers go shard by shard and decode only the rows they asked for, so
memory holds one shard's bytes at most, however large the corpus.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from stages import io
from stages.audio_io import SAMPLE_RATE, decode_audio


def read_clips(audio_dir: str | Path, shard: str, utt_ids: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(utt_id, 16 kHz mono float32 PCM) for each of `utt_ids` in that order, from one shard file."""
    path = io.resolve_inside(audio_dir, shard)
    wanted = pl.DataFrame({"utt_id": list(utt_ids)}, schema={"utt_id": pl.String})
    table = wanted.join(pl.read_parquet(path, columns=["utt_id", "audio"]), on="utt_id", how="left",
                        maintain_order="left")
    for utt_id, data in table.iter_rows():
        if data is None:
            raise KeyError(f"{path}: no audio for utterance {utt_id}")
        pcm, sr = decode_audio(data)
        if sr != SAMPLE_RATE:
            raise ValueError(f"{path}: utterance {utt_id} is {sr} Hz, expected {SAMPLE_RATE} (validate lets none through)")
        yield utt_id, pcm


def shard_groups(manifest: pl.DataFrame) -> list[tuple[str, list[str]]]:
    """(shard, utt_ids sorted) for every shard the manifest rows name, in shard order."""
    grouped = manifest.select("shard", "utt_id").sort("shard", "utt_id").group_by("shard", maintain_order=True)
    return [(str(shard), list(ids)) for shard, ids in grouped.agg(pl.col("utt_id")).iter_rows()]
