"""Audio probe columns: what each clip's bytes really are, read shard by shard.

Memory stays flat as the corpus grows: shards are read one at a time in small record batches, each clip is
decoded, measured and dropped, and only a handful of numbers per clip are kept. A clip is looked up in the shard
its manifest row names, so a row pointing at the wrong shard shows up as missing audio. Decoding dominates the
stage's time; `probe_shard` is the unit to spread over workers.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from stages.io import resolve_inside

#: A sample at or above this magnitude counts as clipped (16-bit full scale is 32767/32767 = 1.0).
CLIP_LEVEL = 0.999
#: Clips decoded per record batch: bounds the encoded bytes held at once.
_BATCH_ROWS = 64

#: Probe columns (null where a probe could not run: no clip, or bytes that do not decode).
AUDIO_PROBES: dict[str, pl.DataType] = {
    "shard_problem": pl.String(), "clip_copies": pl.Int64(), "sha256_actual": pl.String(),
    "decode_error": pl.String(), "decoded_sample_rate": pl.Int64(), "decoded_channels": pl.Int64(),
    "decoded_n_samples": pl.Int64(), "nonfinite_samples": pl.Int64(), "peak": pl.Float64(), "rms": pl.Float64(),
    "clipped_fraction": pl.Float64(),
}


def _error_text(exc: Exception) -> str:
    """The decoder's message without the object address libsndfile prints (details must be deterministic)."""
    return re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "clip bytes", f"{type(exc).__name__}: {exc}")


def clip_probe(data: bytes) -> dict[str, Any]:
    """Hash, decode and measure one clip's encoded bytes (all channels: a stereo clip is not mixed down first)."""
    probe: dict[str, Any] = {"sha256_actual": hashlib.sha256(data).hexdigest()}
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:  # one open for header and samples
            channels, sr = f.channels, f.samplerate
            pcm = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:  # what libsndfile raises on non-audio bytes
        probe["decode_error"] = _error_text(exc)
        return probe
    finite = np.isfinite(pcm)
    nonfinite = pcm.size - int(np.count_nonzero(finite))
    x = (pcm if nonfinite == 0 else pcm[finite]).ravel()
    probe.update(decoded_sample_rate=int(sr), decoded_channels=int(channels), decoded_n_samples=int(pcm.shape[0]),
                 nonfinite_samples=nonfinite, peak=0.0, rms=0.0, clipped_fraction=0.0)
    if x.size:
        mag = np.abs(x)
        probe.update(peak=float(mag.max()), rms=float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))),
                     clipped_fraction=float(np.count_nonzero(mag >= CLIP_LEVEL)) / x.size)
    return probe


@dataclass(frozen=True)
class ShardTask:
    """The clips wanted from one shard: the unit a flow may map over (plain fields, so it pickles cheaply)."""

    path: str
    utt_ids: tuple[str | None, ...]


def probe_shard(task: ShardTask) -> dict[str | None, dict[str, Any]]:
    """utt_id -> probe for every wanted clip of one shard, reading it a record batch at a time.

    `clip_copies` counts the clips with that id (0: missing); an unreadable shard (corrupt, or without the
    utt_id / audio columns) gives every wanted id a `shard_problem` instead.
    """
    out: dict[str | None, dict[str, Any]] = {u: {"clip_copies": 0} for u in task.utt_ids}
    try:
        batches = pq.ParquetFile(task.path).iter_batches(batch_size=_BATCH_ROWS, columns=["utt_id", "audio"])
        for batch in batches:
            ids = batch.column("utt_id").cast(pa.binary()).to_pylist()  # never trust an id's UTF-8
            for raw_id, data in zip(ids, batch.column("audio").to_pylist()):
                probe = out.get(None if raw_id is None else raw_id.decode("utf-8", errors="replace"))
                if probe is None:
                    continue
                probe["clip_copies"] += 1
                if probe["clip_copies"] == 1:
                    probe.update(clip_probe(data or b""))
    except (OSError, KeyError, pa.ArrowException) as exc:
        problem = f"unreadable shard {Path(task.path).name}: {_error_text(exc)}"
        return {u: {"shard_problem": problem} for u in task.utt_ids}
    return out


MapShards = Callable[[Callable[[ShardTask], dict], Iterable[ShardTask]], Iterable[dict]]


def shard_probes(audio: pl.DataFrame, audio_dir: str | Path, map_shards: MapShards = map) -> pl.DataFrame:
    """The `AUDIO_PROBES` columns for every row of the audio manifest (same order), each shard read once.

    `map_shards` runs `probe_shard` over the shards (the built-in `map` by default; a pool's or a flow's map
    to spread them over workers).
    """
    probes: list[dict[str, Any]] = [{} for _ in range(audio.height)]
    resolved: dict[str | None, Path] = {}
    unusable: dict[str | None, str] = {}  # shard as written -> why it cannot be read
    for shard in audio["shard"].unique().to_list():
        try:
            path = resolve_inside(audio_dir, shard or "")
        except ValueError as exc:
            unusable[shard] = str(exc)
            continue
        if path.is_file():
            resolved[shard] = path
        else:
            unusable[shard] = f"shard {shard!r} not found in {audio_dir}"
    wanted: dict[Path, list[int]] = {}
    for i, shard in enumerate(audio["shard"].to_list()):
        if shard in unusable:
            probes[i]["shard_problem"] = unusable[shard]
        else:
            wanted.setdefault(resolved[shard], []).append(i)
    ids = audio["utt_id"].to_list()
    tasks = [ShardTask(str(path), tuple(dict.fromkeys(ids[i] for i in rows))) for path, rows in sorted(wanted.items())]
    for task, found in zip(tasks, map_shards(probe_shard, tasks)):
        for i in wanted[Path(task.path)]:
            probes[i] = found[ids[i]]
    return pl.DataFrame(probes, schema=AUDIO_PROBES)
