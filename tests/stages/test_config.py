"""Strict params loading: unknown keys, wrong types and failed checks name the file and key."""

from dataclasses import dataclass
from typing import Literal

import pytest

from stages.config import ParamsError, load_section, with_overrides


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5


@dataclass(frozen=True)
class Demo:
    name: str = "x"
    n: int = 1
    mode: Literal["a", "b"] = "a"
    voices: tuple[str, ...] = ("v",)
    inner: Inner = Inner()

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be >= 0")


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_loads_and_coerces(tmp_path):
    p = write(tmp_path, "demo:\n  n: 3\n  mode: b\n  voices: [a, b]\n  inner: {rate: 1}\n")
    d = load_section(p, "demo", Demo)
    assert d == Demo(n=3, mode="b", voices=("a", "b"), inner=Inner(rate=1.0))
    assert isinstance(d.inner.rate, float)


def test_missing_section_gives_defaults(tmp_path):
    assert load_section(write(tmp_path, "other: {}\n"), "demo", Demo) == Demo()


@pytest.mark.parametrize("body, fragment", [
    ("demo:\n  nn: 3\n", "unknown key(s) ['nn']"),
    ("demo:\n  n: '3'\n", "demo.n: expected an integer"),
    ("demo:\n  n: true\n", "demo.n: expected an integer"),
    ("demo:\n  mode: c\n", "'c' is not one of"),
    ("demo:\n  inner: {speed: 1}\n", "demo.inner: unknown key(s) ['speed']"),
    ("demo:\n  n: -1\n", "n must be >= 0"),
    ("demo: [1, 2]\n", "must be a mapping"),
])
def test_rejects_bad_params_naming_the_key(tmp_path, body, fragment):
    p = write(tmp_path, body)
    with pytest.raises(ParamsError) as exc:
        load_section(p, "demo", Demo)
    assert fragment in str(exc.value)
    assert str(p) in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_section(tmp_path / "nope.yaml", "demo", Demo)


def test_overrides_are_read_as_yaml_and_checked_like_the_file():
    assert with_overrides(Demo(), ["n=4", "mode=b", "voices=[c]", "inner={rate: 2}"], "cli") == \
        Demo(n=4, mode="b", voices=("c",), inner=Inner(rate=2.0))
    assert with_overrides(Demo(n=2), [], "cli") == Demo(n=2)


@pytest.mark.parametrize("assignment, fragment", [
    ("nn=3", "cli: unknown key(s) ['nn']"),
    ("n=x", "cli.n: expected an integer"),
    ("n=-1", "n must be >= 0"),
    ("n", "override 'n' is not KEY=VALUE"),
])
def test_bad_overrides_name_the_key(assignment, fragment):
    with pytest.raises(ParamsError) as exc:
        with_overrides(Demo(), [assignment], "cli")
    assert fragment in str(exc.value)
