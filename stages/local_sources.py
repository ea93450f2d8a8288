"""Adapters for real speech data on local disk: a LibriSpeech-layout directory or a JSONL manifest.

Both yield `LocalRecord`s whose `audio_path` is relative to the dataset's own folder (the *audio root*), so
manifests never hold absolute paths and a path that climbs out of the root (`../`) is rejected here, with the
file and line named, before anything downstream reads it.

LibriSpeech layout: `<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`, lines `<utt-id> <TRANSCRIPT>`,
audio beside it as `<utt-id>.flac`. JSONL: one object per line with `audio` (path relative to the JSONL file's
folder) and `text`, optionally `id` and `split` (train/val/test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stages.io import resolve_inside

_SPLITS = {"train", "val", "test"}


class LocalSourceError(ValueError):
    """A local dataset is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class LocalRecord:
    record_id: str
    text: str
    audio_path: str
    split: str | None = None


def audio_root_of(local_path: str | Path) -> Path:
    """The folder recorded `audio_path`s are relative to: the LibriSpeech root, or the JSONL file's folder."""
    p = Path(local_path).resolve()
    return p.parent if p.is_file() else p


def read_librispeech(root: str | Path) -> Iterator[LocalRecord]:
    """Every utterance of a LibriSpeech-layout tree, sorted by transcript file for determinism."""
    base = Path(root)
    if not base.is_dir():
        raise LocalSourceError(f"{base}: LibriSpeech root directory not found")
    transcripts = sorted(base.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise LocalSourceError(f"{base}: no <speaker>/<chapter>/*.trans.txt files (is this a LibriSpeech layout?)")
    for trans in transcripts:
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            if not text:
                raise LocalSourceError(f"{trans}:{lineno}: expected '<utt-id> <transcript>'")
            rel = (trans.parent / f"{utt}.flac").relative_to(base).as_posix()
            if not (base / rel).is_file():
                raise LocalSourceError(f"{trans}:{lineno}: audio file {rel} not found")
            yield LocalRecord(record_id=f"librispeech:{utt}", text=text.strip().lower().capitalize(), audio_path=rel)


def read_jsonl(path: str | Path) -> Iterator[LocalRecord]:
    """Every line of a JSONL manifest, validated: known keys, non-empty text, audio inside the file's folder."""
    manifest = Path(path)
    if not manifest.is_file():
        raise LocalSourceError(f"{manifest}: JSONL manifest not found")
    root = audio_root_of(manifest)
    with manifest.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{manifest}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LocalSourceError(f"{where}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("audio"), str) or not isinstance(obj.get("text"), str):
                raise LocalSourceError(f"{where}: each line needs string fields 'audio' and 'text'")
            unknown = set(obj) - {"audio", "text", "id", "split"}
            if unknown:
                raise LocalSourceError(f"{where}: unknown field(s) {sorted(unknown)}")
            if not obj["text"].strip():
                raise LocalSourceError(f"{where}: empty text")
            split = obj.get("split")
            if split is not None and split not in _SPLITS:
                raise LocalSourceError(f"{where}: split must be one of {sorted(_SPLITS)}, got {split!r}")
            try:
                target = resolve_inside(root, obj["audio"])
            except ValueError as exc:
                raise LocalSourceError(f"{where}: {exc}") from exc
            if not target.is_file():
                raise LocalSourceError(f"{where}: audio file {obj['audio']} not found")
            rel = target.relative_to(root.resolve()).as_posix()
            yield LocalRecord(record_id=f"jsonl:{obj.get('id') or rel}", text=obj["text"].strip(), audio_path=rel,
                              split=split)
