"""synthesize: turn every utterance of the corpus into 16 kHz mono audio, stored in shards.

    dvc repro synthesize
    python -m flows.synthesize --params params.yaml --raw data/raw --out data/audio

Speech to synthesize goes through the TTS backends (`stages.tts`): user turns rotate over several voices
(picked by a hash of the utterance id, so the choice is stable), assistant turns use one consistent voice.
Procedural sounds come from `stages.sounds`; recorded speech (local datasets) is resampled to 16 kHz mono.

Output layout (`out_dir`):
- `shards/shard-NNNNN.parquet`: `utt_id`, `audio` (FLAC bytes). Few large files, so DVC stays fast.
- `shards/shard-NNNNN.done.json`: the shard's job key and its manifest rows; written last, atomically. A
  killed run restarts without redoing shards whose key still matches (same utterances, voices and code version).
- `manifest.parquet`: one row per clip (id, kind, voice, text, split, parents, duration, sample rate, channels,
  samples, shard, sha256 of the bytes).

A clip that cannot be produced (a TTS failure, an unreadable recording) is not dropped: its row keeps the raw
bytes (possibly empty) and zero sample rate, so the validate stage quarantines it with the rule that failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from stages import io
from stages.audio_io import SAMPLE_RATE, encode_flac, to_pipeline_format

log = logging.getLogger(__name__)

#: Bump when synthesis output for the same inputs changes, so resumed runs redo stale shards.
CODE_VERSION = "1"
#: Tries per clip before it is kept as a failed row.
RENDER_ATTEMPTS = 3

AUDIO_MANIFEST_SCHEMA = {
    "utt_id": pl.String, "kind": pl.String, "voice": pl.String, "text": pl.String, "split": pl.String,
    "group_id": pl.String, "parent_ids": pl.List(pl.String), "duration_s": pl.Float64, "sample_rate": pl.Int64,
    "channels": pl.Int64, "n_samples": pl.Int64, "shard": pl.String, "sha256": pl.String, "source": pl.String,
}


@dataclass(frozen=True)
class SynthesizeParams:
    """`synthesize` section of params.yaml."""

    user_voices: tuple[str, ...] = ("flite:awb", "flite:rms", "flite:kal16", "espeak-ng:en-us", "espeak-ng:en-us+m3",
                                    "festival:kal")
    """Voices for user turns (`<backend>:<voice>`); each utterance gets one, chosen by a hash of its id."""
    assistant_voice: str = "flite:slt"
    """The one consistent voice of every assistant turn."""
    shard_size: int = 200
    """Clips per shard file (the unit of parallelism and of resume)."""
    max_workers: int = 2
    """Parallel shard workers."""
    task_runner: Literal["thread", "process", "dask", "ray"] = "thread"
    """Prefect task runner the flow maps shards with (dask/ray need prefect-dask / prefect-ray installed)."""
    cosyvoice_dir: str = ""
    """Local CosyVoice2 model directory, needed only when a voice `cosyvoice2:<speaker>` is used."""

    def __post_init__(self) -> None:
        if not self.user_voices:
            raise ValueError("user_voices must name at least one voice")
        for v in (*self.user_voices, self.assistant_voice):
            if ":" not in v:
                raise ValueError(f"voice {v!r} is not of the form '<backend>:<voice>'")
        if self.shard_size <= 0 or self.max_workers <= 0:
            raise ValueError("shard_size and max_workers must be positive")


@dataclass(frozen=True)
class ClipJob:
    """One clip to produce (plain fields only, so jobs pickle cheaply to worker processes)."""

    utt_id: str
    kind: str
    voice: str
    text: str
    split: str
    group_id: str
    parent_ids: tuple[str, ...]
    source: str
    sound_class: str | None
    sound_seed: int | None
    audio_path: str | None


@dataclass(frozen=True)
class ShardJob:
    index: int
    key: str
    clips: tuple[ClipJob, ...]
    audio_root: str
    cosyvoice_dir: str

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


def voice_for(utt_id: str, kind: str, sound_class: str | None, params: SynthesizeParams) -> str:
    """The voice of an utterance: hashed over the user voices, the assistant voice, or its non-TTS origin."""
    if kind == "speech_user":
        h = int(hashlib.sha256(utt_id.encode()).hexdigest()[:8], 16)
        return params.user_voices[h % len(params.user_voices)]
    if kind == "speech_assistant":
        return params.assistant_voice
    if kind == "sound":
        return f"procedural:{sound_class}"
    if kind == "recorded":
        return "recorded"
    raise ValueError(f"unknown utterance kind {kind!r}")


def plan_shards(utterances: pl.DataFrame, params: SynthesizeParams, audio_root: str) -> list[ShardJob]:
    """Split the utterances (sorted by id) into shard jobs, each keyed by its content and the code version."""
    rows = utterances.sort("utt_id").iter_rows(named=True)
    clips = [ClipJob(utt_id=r["utt_id"], kind=r["kind"], voice=voice_for(r["utt_id"], r["kind"], r["sound_class"], params),
                     text=r["text"], split=r["split"], group_id=r["group_id"], parent_ids=tuple(r["parent_ids"]),
                     source=r["source"], sound_class=r["sound_class"], sound_seed=r["sound_seed"],
                     audio_path=r["audio_path"]) for r in rows]
    jobs = []
    for index, start in enumerate(range(0, len(clips), params.shard_size)):
        chunk = tuple(clips[start:start + params.shard_size])
        key = io.sha256_text(CODE_VERSION, json.dumps([asdict(c) for c in chunk], sort_keys=True))
        jobs.append(ShardJob(index, key, chunk, audio_root, params.cosyvoice_dir))
    return jobs


# --- producing one clip ------------------------------------------------------------------------------------------
_BACKENDS: dict[str, object] = {}  # per process: TTS engines stay warm across clips (piper loads once)


def _tts(voice: str, text: str, cosyvoice_dir: str) -> np.ndarray:
    from stages.tts import Voice, get_backend

    v = Voice.parse(voice)
    backend = _BACKENDS.get(v.backend)
    if backend is None:
        backend = get_backend(v.backend, model_dir=cosyvoice_dir) if v.backend == "cosyvoice2" else get_backend(v.backend)
        backend.require()
        _BACKENDS[v.backend] = backend
    return backend.synthesize(text, v.name)


def _render_clip(clip: ClipJob, audio_root: str, cosyvoice_dir: str) -> np.ndarray:
    if clip.kind == "sound":
        from stages.sounds import generate_sound

        pcm, caption = generate_sound(clip.sound_class, clip.sound_seed)
        if caption != clip.text:
            raise RuntimeError(f"sound caption changed since fetch: {caption!r} != {clip.text!r}")
        return pcm
    if clip.kind == "recorded":
        import soundfile as sf

        path = io.resolve_inside(audio_root, clip.audio_path or "")
        pcm, sr = sf.read(path, dtype="float32", always_2d=False)
        return to_pipeline_format(pcm, sr)
    return _tts(clip.voice, clip.text, cosyvoice_dir)


def _encode_clip(clip: ClipJob, audio_root: str, cosyvoice_dir: str) -> tuple[bytes, int, int, int]:
    """(bytes, sample_rate, channels, n_samples); on failure the raw bytes (or none) with zeros, for validate.

    Engines are retried (`RENDER_ATTEMPTS`): a TTS subprocess can time out on a loaded machine, and a shard
    marked done is never redone, so a transient failure would otherwise become a permanent quarantine.
    """
    for attempt in range(1, RENDER_ATTEMPTS + 1):
        try:
            pcm = _render_clip(clip, audio_root, cosyvoice_dir)
            return encode_flac(pcm, SAMPLE_RATE), SAMPLE_RATE, 1, int(pcm.shape[0])
        except Exception as exc:  # kept, not dropped: validate quarantines it with a named rule
            log.warning("clip %s (%s) failed (attempt %d/%d): %s", clip.utt_id, clip.voice, attempt,
                        RENDER_ATTEMPTS, exc)
            if clip.kind == "recorded":
                break  # a file on disk does not get better by reading it again
    raw = b""
    if clip.kind == "recorded" and clip.audio_path:
        try:
            raw = io.resolve_inside(audio_root, clip.audio_path).read_bytes()
        except (OSError, ValueError):
            raw = b""
    return raw, 0, 0, 0


def synthesize_shard(job: ShardJob, out_dir: str) -> int:
    """Produce one shard unless a finished shard with the same key is already there; returns clips written."""
    shards = Path(out_dir) / "shards"
    done = shards / f"{job.name}.done.json"
    if done.is_file() and (shards / f"{job.name}.parquet").is_file():
        if json.loads(done.read_text()).get("key") == job.key:
            return 0
    ids, blobs, rows = [], [], []
    for clip in job.clips:
        data, sr, channels, n = _encode_clip(clip, job.audio_root, job.cosyvoice_dir)
        ids.append(clip.utt_id)
        blobs.append(data)
        rows.append(dict(utt_id=clip.utt_id, kind=clip.kind, voice=clip.voice, text=clip.text, split=clip.split,
                         group_id=clip.group_id, parent_ids=list(clip.parent_ids),
                         duration_s=n / sr if sr else 0.0, sample_rate=sr, channels=channels, n_samples=n,
                         shard=f"shards/{job.name}.parquet", sha256=hashlib.sha256(data).hexdigest(),
                         source=clip.source))
    io.write_parquet(pl.DataFrame({"utt_id": ids, "audio": blobs}, schema={"utt_id": pl.String, "audio": pl.Binary}),
                     shards / f"{job.name}.parquet")
    io.write_json({"key": job.key, "rows": rows}, done)
    return len(rows)


def collect_manifest(jobs: list[ShardJob], out_dir: str | Path) -> pl.DataFrame:
    """Join the finished shards' rows into `manifest.parquet`; remove shards no job names (stale from old params)."""
    shards = Path(out_dir) / "shards"
    wanted = {j.name for j in jobs}
    for f in shards.glob("shard-*"):
        if f.name.split(".")[0] not in wanted:
            f.unlink()
    rows = []
    for job in jobs:
        done = json.loads((shards / f"{job.name}.done.json").read_text())
        if done["key"] != job.key:
            raise RuntimeError(f"{job.name} is stale; rerun synthesize")
        rows += done["rows"]
    manifest = pl.DataFrame(rows, schema=AUDIO_MANIFEST_SCHEMA)
    io.write_parquet(manifest, Path(out_dir) / "manifest.parquet")
    return manifest


def load_jobs(params: SynthesizeParams, raw_dir: str | Path) -> list[ShardJob]:
    """Read the fetch outputs and plan the shard jobs."""
    raw = Path(raw_dir)
    source = json.loads((raw / "source.json").read_text())
    return plan_shards(pl.read_parquet(raw / "utterances.parquet"), params, source["audio_root"])


def summarize(manifest: pl.DataFrame) -> dict[str, object]:
    """Audio hours and clip counts per kind and voice (for the run artifact and the report)."""
    per_voice = manifest.group_by("voice").agg(pl.len().alias("clips"), (pl.col("duration_s").sum() / 3600).alias("hours"))
    return {"clips": manifest.height, "hours": round(float(manifest["duration_s"].sum()) / 3600, 4),
            "failed": int((manifest["sample_rate"] == 0).sum()),
            "per_voice": {r["voice"]: {"clips": r["clips"], "hours": round(r["hours"], 4)}
                          for r in per_voice.sort("voice").iter_rows(named=True)}}


def run_synthesize(params: SynthesizeParams, raw_dir: str | Path, out_dir: str | Path,
                   map_shards: Callable[[Callable[[ShardJob], int], Iterable[ShardJob]], Iterable[int]] | None = None,
                   ) -> pl.DataFrame:
    """Plan, produce every shard (through `map_shards`, default a local process pool) and collect the manifest."""
    jobs = load_jobs(params, raw_dir)
    work = _ShardWorker(str(out_dir))
    if map_shards is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked child inherits polars' thread-pool locks mid-use and can deadlock
        with ProcessPoolExecutor(max_workers=params.max_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(work, jobs))
    else:
        list(map_shards(work, jobs))
    return collect_manifest(jobs, out_dir)


@dataclass(frozen=True)
class _ShardWorker:
    """A picklable `synthesize_shard` bound to the output directory."""

    out_dir: str

    def __call__(self, job: ShardJob) -> int:
        return synthesize_shard(job, self.out_dir)
