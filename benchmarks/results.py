"""Where every benchmark leaves its figures: one JSON file, written atomically.

Standard library only, not `stages.io`: the GPU benchmarks run on machines that have torch and transformers but
not the data stack (`stages.io` imports polars).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write `obj` as sorted, indented JSON through a temp file + rename, so a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
