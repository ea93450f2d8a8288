"""Atomic, deterministic file writes shared by every stage.

Every output is written to a temporary file in the destination directory and moved into place with
`os.replace`, so a killed stage never leaves a half-written file that a later run would mistake for finished
work. Parquet files are written without statistics that embed timestamps, so equal data gives equal bytes
(and equal DVC hashes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Mode of every output: what `open()` would give (0o666 less the umask), not `mkstemp`'s owner-only 0o600, which
#: would survive the rename and leave reports unreadable to other users. Read once, at import, because reading the
#: umask means setting it, which is not thread-safe.
FILE_MODE = 0o666 & ~_umask()


def _atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def write_parquet(df: pl.DataFrame, path: str | Path) -> Path:
    """Write a parquet file atomically (zstd, one row group per 64k rows, deterministic bytes)."""
    return _atomic(path, lambda p: df.write_parquet(p, compression="zstd", statistics=False, row_group_size=65536))


def write_bytes(data: bytes, path: str | Path) -> Path:
    """Write raw bytes atomically."""
    return _atomic(path, lambda p: p.write_bytes(data))


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
