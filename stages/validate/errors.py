"""The validate stage's two failure kinds: bad data (the stage's verdict) and a broken contract (a bug)."""

from __future__ import annotations


class ValidationError(RuntimeError):
    """The data fails its contracts: a manifest is unreadable or has the wrong schema, or too many rows are bad."""


class ContractError(RuntimeError):
    """A contract in `data_contracts/` cannot be evaluated (unknown column, not a row-level expectation, ...)."""
