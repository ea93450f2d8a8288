"""The benchmarks' shared JSON writer: readable back, sorted, and never leaves a temp file behind."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from benchmarks.results import write_json_atomic
from stages.atomic import FILE_MODE


def test_writes_sorted_json_atomically_and_replaces_an_old_file(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "bench.json"
    out.parent.mkdir()
    out.write_text("stale")
    write_json_atomic({"b": 2, "a": [1.5, None]}, out)
    assert json.loads(out.read_text()) == {"a": [1.5, None], "b": 2}
    assert out.read_text().index('"a"') < out.read_text().index('"b"')
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]
    assert stat.S_IMODE(out.stat().st_mode) == FILE_MODE
