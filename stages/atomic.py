"""Atomic file writes: a temporary file in the destination directory, moved into place with `os.replace`.

Standard library only, so the training checkpoints and the GPU benchmarks (machines with torch but not the data
stack that `stages.io` imports) share the one mechanism with every stage's outputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Mode of every output: what `open()` would give (0o666 less the umask), not `mkstemp`'s owner-only 0o600, which
#: would survive the rename and leave reports, models and benchmark figures unreadable to other users. Read once,
#: at import, because reading the umask means setting it, which is not thread-safe.
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a fresh temporary file beside `path`, then rename it over `path`; on any failure the
    temporary file is removed and `path` is left as it was. Returns `path`."""
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
