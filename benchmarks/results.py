"""Where every benchmark leaves its figures: one JSON file, written atomically.

Through `stages.atomic` (standard library only), not `stages.io`: the GPU benchmarks run on machines that have torch
and transformers but not the data stack (`stages.io` imports polars).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stages.atomic import atomic_write


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write `obj` as sorted, indented JSON through a temp file + rename, so a killed run leaves no half file."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))
