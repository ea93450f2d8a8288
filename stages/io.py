"""Atomic, deterministic file writes shared by every stage.

Every output is written to a temporary file in the destination directory and moved into place with
`os.replace`, so a killed stage never leaves a half-written file that a later run would mistake for finished
work. Parquet files are written without statistics that embed timestamps, so equal data gives equal bytes
(and equal DVC hashes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from stages.atomic import atomic_write


def write_parquet(df: pl.DataFrame, path: str | Path) -> Path:
    """Write a parquet file atomically (zstd, one row group per 64k rows, deterministic bytes)."""
    return atomic_write(path, lambda p: df.write_parquet(p, compression="zstd", statistics=False, row_group_size=65536))


def write_bytes(data: bytes, path: str | Path) -> Path:
    """Write raw bytes atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(text: str, path: str | Path) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(text.encode("utf-8"), path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write pretty, key-sorted JSON atomically (stable diffs for DVC metrics)."""
    return write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", path)


def sha256_text(*parts: str) -> str:
    """Hex sha256 of the parts joined by a unit separator (stable content hashes and ids)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def stable_id(prefix: str, *parts: str, length: int = 16) -> str:
    """A short deterministic id such as `utt-3fa1…` derived from the content it names."""
    return f"{prefix}-{sha256_text(*parts)[:length]}"


def resolve_inside(root: str | Path, relative: str) -> Path:
    """Resolve `relative` under `root`, refusing absolute paths and `..` escapes (manifests stay in the data root)."""
    base = Path(root).resolve()
    if Path(relative).is_absolute():
        raise ValueError(f"path {relative!r} is absolute; manifest paths must be relative to {base}")
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ValueError(f"path {relative!r} escapes the data root {base}")
    return target
