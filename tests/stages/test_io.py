"""stages/io.py: writes are atomic (nothing half-written, no temp file left) and outputs are readable by others."""

from __future__ import annotations

import stat
from pathlib import Path

import polars as pl
import pytest

from stages import io
from stages.atomic import FILE_MODE


def test_outputs_get_the_umask_mode_not_mkstemps_owner_only_mode(tmp_path: Path) -> None:
    written = [io.write_json({"a": 1}, tmp_path / "m.json"), io.write_text("x", tmp_path / "r.md"),
               io.write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "t.parquet")]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert FILE_MODE & stat.S_IRUSR and FILE_MODE != 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    dest = io.write_parquet(pl.DataFrame({"version": [1]}), tmp_path / "t.parquet")

    def half_written(self: pl.DataFrame, path: Path, **_: object) -> None:
        Path(path).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", half_written)
    with pytest.raises(OSError, match="disk full"):
        io.write_parquet(pl.DataFrame({"version": [2]}), dest)
    monkeypatch.undo()
    assert pl.read_parquet(dest)["version"].to_list() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
