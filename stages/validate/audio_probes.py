"""Audio probe columns: what each clip's bytes really are, read shard by shard.

Memory stays flat as the corpus grows: shards are read one at a time in small record batches, each clip is
decoded, measured and dropped, and only a handful of numbers per clip are kept. A clip is looked up in the shard
its manifest row names, so a row pointing at the wrong shard shows up as missing audio.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from stages.audio_io import decode_audio
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
    """Hash, decode and measure one clip's encoded bytes."""
    probe: dict[str, Any] = {"sha256_actual": hashlib.sha256(data).hexdigest()}
    try:
        channels = sf.info(io.BytesIO(data)).channels  # decode_audio mixes to mono, so ask the header
        pcm, sr = decode_audio(data)
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:  # what libsndfile raises on non-audio bytes
        probe["decode_error"] = _error_text(exc)
        return probe
    finite = np.isfinite(pcm)
    mag = np.abs(pcm[finite]).astype(np.float64)
    probe.update(decoded_sample_rate=sr, decoded_channels=channels, decoded_n_samples=int(pcm.shape[0]),
                 nonfinite_samples=int(pcm.size - finite.sum()),
                 peak=float(mag.max()) if mag.size else 0.0,
                 rms=float(np.sqrt(np.mean(mag**2))) if mag.size else 0.0,
                 clipped_fraction=float(np.mean(mag >= CLIP_LEVEL)) if mag.size else 0.0)
    return probe


def _iter_clips(path: Path) -> Iterator[tuple[str | None, bytes]]:
    """(utt_id, audio bytes) of a shard, a record batch at a time (ids read as bytes: never trust their UTF-8)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=["utt_id", "audio"]):
        ids = batch.column("utt_id").cast(pa.binary()).to_pylist()
        for utt_id, data in zip(ids, batch.column("audio").to_pylist()):
            yield (None if utt_id is None else utt_id.decode("utf-8", errors="replace")), data or b""


def shard_probes(audio: pl.DataFrame, audio_dir: str | Path) -> pl.DataFrame:
    """The `AUDIO_PROBES` columns for every row of the audio manifest (same order), each shard read once."""
    probes: list[dict[str, Any]] = [{} for _ in range(audio.height)]
    wanted: dict[Path, dict[str | None, list[int]]] = {}
    for i, (utt_id, shard) in enumerate(zip(audio["utt_id"], audio["shard"])):
        try:
            path = resolve_inside(audio_dir, shard or "")
        except ValueError as exc:
            probes[i]["shard_problem"] = str(exc)
            continue
        if not path.is_file():
            probes[i]["shard_problem"] = f"shard {shard!r} not found in {audio_dir}"
            continue
        wanted.setdefault(path, {}).setdefault(utt_id, []).append(i)
    for path in sorted(wanted):
        rows = wanted[path]
        copies: Counter[str | None] = Counter()
        try:
            for utt_id, data in _iter_clips(path):
                if utt_id not in rows:
                    continue
                copies[utt_id] += 1
                if copies[utt_id] == 1:
                    probe = clip_probe(data)
                    for i in rows[utt_id]:
                        probes[i].update(probe)
        except (OSError, KeyError, pa.ArrowException) as exc:  # a corrupt shard or one without utt_id/audio
            for i in (i for ids in rows.values() for i in ids):
                probes[i] = {"shard_problem": f"unreadable shard {path.name}: {_error_text(exc)}"}
            continue
        for utt_id, ids in rows.items():
            for i in ids:
                probes[i]["clip_copies"] = copies[utt_id]
    return pl.DataFrame(probes, schema=AUDIO_PROBES)
