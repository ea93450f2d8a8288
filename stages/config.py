"""Typed, strict loading of `params.yaml` sections into frozen dataclasses.

Each stage owns one section of `params.yaml` and one frozen dataclass describing it (a docstring per field,
checks in `__post_init__`). `load_section` rejects unknown keys and wrong scalar types with a message naming
the file and the key, so a typo in `params.yaml` fails the stage at start-up instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """A params file or section does not match its dataclass."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error when the file is missing or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ParamsError(f"{p}: params file not found")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(errors[0] if errors else f"{where}: no type accepts {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ParamsError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(hint) or (Any, Any)
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ParamsError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise `ParamsError` naming `where`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ParamsError(f"{where}: {exc}") from exc
    except ValueError as exc:  # a __post_init__ check failed
        raise ParamsError(f"{where}: {exc}") from exc


def load_section(params_path: str | Path, section: str, cls: type[T]) -> T:
    """Load `section` of a params file into `cls` (missing section = all defaults)."""
    data = read_yaml(params_path)
    raw = data.get(section) or {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{params_path}: section '{section}' must be a mapping")
    return from_mapping(cls, raw, f"{params_path}:{section}")


def with_overrides(section: T, assignments: Sequence[str], where: str) -> T:
    """`section` with command-line `KEY=VALUE` assignments applied (each value read as YAML: `steps=4800`,
    `lr=1e-3`, `model=gpu`), checked exactly like the params file, so a one-off run needs no edited params.yaml."""
    changes = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ParamsError(f"{where}: override {assignment!r} is not KEY=VALUE")
        changes[key] = yaml.safe_load(raw)
    return from_mapping(type(section), {**dataclasses.asdict(section), **changes}, where)  # type: ignore[call-overload]
