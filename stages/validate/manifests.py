"""Read a manifest without trusting its strings, and check its schema.

Parquet requires UTF-8 in string columns, but only writers enforce it: a non-validating writer (another
language's library, pyarrow's `from_buffers`, a hand-rolled converter) can store arbitrary bytes, and polars
then refuses the *whole file*. A lone surrogate, the other classic, cannot get this far: polars and pyarrow
refuse to encode it, so the producer fails instead. So every string column is read as bytes and decoded here,
one value at a time: a bad value becomes a row-level problem (the `<manifest>.text_valid_utf8` rule) instead of
a failed stage, and the decoded frame carries U+FFFD where the bytes were invalid. Decoded text that holds
U+FFFD itself (an upstream `errors="replace"`) or control characters is flagged the same way.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from stages.validate.errors import ValidationError

#: Whitespace controls are ordinary in text; every other control character is corruption.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def _bytes_type(t: pa.DataType) -> pa.DataType:
    """`t` with every string type replaced by binary (so reading never validates UTF-8)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(_bytes_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _bytes_type(f.type)) for f in t])
    return t


def _bytes_dtype(d: pl.DataType) -> pl.DataType:
    """The polars dtype a column of declared dtype `d` has once its strings are read as bytes."""
    if d == pl.String:
        return pl.Binary()
    if isinstance(d, pl.List):
        return pl.List(_bytes_dtype(d.inner))
    if isinstance(d, pl.Struct):
        return pl.Struct({f.name: _bytes_dtype(f.dtype) for f in d.fields})
    return d


def text_problem(text: str) -> str | None:
    """Why decoded text is not clean UTF-8 text (a replacement or control character), or None."""
    if "\ufffd" in text:
        return f"holds U+FFFD at char {text.index(chr(0xFFFD))} (bytes lost to an earlier lossy decode)"
    for i, ch in enumerate(text):
        if ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) == "Cc":
            return f"holds control character U+{ord(ch):04X} at char {i}"
    return None


def _decode(value: Any, where: str, problems: list[str]) -> Any:
    """Decode every bytes leaf of a nested value; append a message per bad leaf."""
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{where}: invalid UTF-8 at byte {exc.start}")
            return value.decode("utf-8", errors="replace")
        problem = text_problem(text)
        if problem:
            problems.append(f"{where}: {problem}")
        return text
    if isinstance(value, list):
        return [_decode(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _decode(v, f"{where}.{k}", problems) for k, v in value.items()}
    return value


def read_manifest(path: str | Path, schema: dict[str, pl.DataType]) -> tuple[pl.DataFrame, list[str | None]]:
    """Read `path`, check it has `schema`'s columns and dtypes, and decode its strings.

    Returns the frame (extra columns kept) and one encoding problem per row (None = clean). A missing file, a
    missing column or a wrong dtype is not a row problem: it raises `ValidationError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"{p}: manifest not found")
    try:
        table = pq.read_table(p)
    except (OSError, pa.ArrowException) as exc:
        raise ValidationError(f"{p}: unreadable parquet: {exc}") from exc
    declared = pl.from_arrow(table.schema.empty_table()).schema  # dtypes as stored, before any value is decoded
    missing = [c for c in schema if c not in declared]
    wrong = [f"{c}: {declared[c]} (expected {d})" for c, d in schema.items() if c in declared and declared[c] != d]
    if missing or wrong:
        raise ValidationError(f"{p}: schema mismatch; missing columns {missing}, wrong dtypes {wrong}")
    raw = pl.from_arrow(table.cast(pa.schema([pa.field(f.name, _bytes_type(f.type)) for f in table.schema])))
    assert isinstance(raw, pl.DataFrame)
    problems: list[list[str]] = [[] for _ in range(raw.height)]
    columns = []
    for name, dtype in declared.items():
        if _bytes_dtype(dtype) == dtype:  # no strings inside: nothing to decode
            columns.append(raw[name])
            continue
        values = [_decode(v, name, problems[i]) for i, v in enumerate(raw[name].to_list())]
        columns.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(columns), ["; ".join(msgs) if msgs else None for msgs in problems]
