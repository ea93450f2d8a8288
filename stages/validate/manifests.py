"""Read a manifest without trusting its strings, and check its schema.

Parquet requires UTF-8 in string columns, but only writers enforce it: a non-validating writer (another
language's library, pyarrow's `from_buffers`, a hand-rolled converter) can store arbitrary bytes, and polars
then refuses the *whole file*. A lone surrogate, the other classic, cannot get this far: polars and pyarrow
refuse to encode it, so the producer fails instead. So every string column is read as bytes and decoded here,
one value at a time: a bad value becomes a row-level problem (the `<manifest>.text_valid_utf8` rule) instead of
a failed stage, and the decoded frame carries U+FFFD where the bytes were invalid. Decoded text that holds
U+FFFD itself (an upstream `errors="replace"`) or control characters is flagged the same way.

Python-level decoding is slow at 100k+ rows, so it is the fallback: a column whose UTF-8 Arrow validates in C++
is imported as is, character checks run as one vectorised regex, and only flagged rows are described in Python.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from stages.validate.errors import ValidationError

#: U+FFFD and the control characters (Unicode category Cc) except tab, newline and carriage return.
_BAD_CHARS = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]"
_BAD_CHAR = re.compile(_BAD_CHARS)


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
    """Why decoded text is not clean text (a replacement or control character), or None."""
    found = _BAD_CHAR.search(text)
    if found is None:
        return None
    if found.group() == "\ufffd":
        return f"holds U+FFFD at char {found.start()} (bytes lost to an earlier lossy decode)"
    return f"holds control character U+{ord(found.group()):04X} at char {found.start()}"


def _flag(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """A per-row boolean: does any string inside `expr` (of `dtype`) hold a bad character? None: no strings."""
    if dtype == pl.String:
        return expr.str.contains(_BAD_CHARS)
    if isinstance(dtype, pl.List):
        inner = _flag(pl.element(), dtype.inner)
        return None if inner is None else expr.list.eval(inner).list.any()
    if isinstance(dtype, pl.Struct):
        parts = [p for f in dtype.fields if (p := _flag(expr.struct.field(f.name), f.dtype)) is not None]
        return pl.any_horizontal(parts) if parts else None
    return None


def _decode(value: Any, where: str, problems: list[str]) -> Any:
    """Decode every bytes leaf of a nested value (str leaves are only checked); append a message per bad leaf."""
    if isinstance(value, (bytes, str)):
        try:
            text = value if isinstance(value, str) else value.decode("utf-8")
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
    problems: list[list[str]] = [[] for _ in range(table.num_rows)]
    columns = []
    for name, dtype in declared.items():
        column = table.column(name)
        if _bytes_dtype(dtype) == dtype:  # no strings inside: nothing to decode
            columns.append(pl.Series(name, column))
            continue
        try:
            column.validate(full=True)  # Arrow's C++ UTF-8 check
        except pa.ArrowInvalid:  # slow path: decode value by value, describing every bad one
            values = column.cast(_bytes_type(column.type)).to_pylist()
            columns.append(pl.Series(name, [_decode(v, name, problems[i]) for i, v in enumerate(values)], dtype=dtype))
            continue
        series = pl.Series(name, column)
        flagged = pl.select(_flag(pl.lit(series), dtype).fill_null(False).arg_true()).to_series()
        for i, value in zip(flagged.to_list(), series.gather(flagged).to_list()):
            _decode(value, name, problems[i])
        columns.append(series)
    return pl.DataFrame(columns), ["; ".join(msgs) if msgs else None for msgs in problems]
