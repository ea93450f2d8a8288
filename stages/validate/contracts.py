"""The data contracts: great-expectations suites stored as JSON in `data_contracts/`, one per manifest.

A contract is a plain GX 1.x suite (`{"name", "expectations": [{"type", "kwargs", "meta", "description"}]}`)
whose expectations are all row-level (column-map or column-pair-map), so every failure points at rows. Each
expectation names its *rule* in `meta.rule` (`audio.sample_rate_expected`, `utterances.utt_id_unique`): the
name the quarantine and the report use. Thresholds are `{"$PARAMETER": "<ValidateParams field>"}`, resolved at
evaluation time, so tuning a threshold is a params change, not a contract edit.

GX evaluates a pandas frame of the manifest's columns plus *probe* columns computed in Python for what GX cannot
express (decoded audio properties, cross-row split leaks, cascades); problem probes are strings that are null
when the row is fine, so the failing value itself is the readable detail.

great-expectations takes 5-7 s to import, so it is imported only when a contract is evaluated on a non-empty
frame, and one ephemeral context serves the whole process.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from stages.validate.errors import ContractError

#: Where the suites live (a dvc dependency of the stage).
CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "data_contracts"
#: Row-position column added to every evaluated frame; GX reports failing rows by it.
ROW = "_row"
_COLUMN_KWARGS = ("column", "column_A", "column_B")


@dataclass(frozen=True)
class Violation:
    """One failing (row, rule) pair."""

    row: int
    rule: str
    detail: str


@dataclass(frozen=True)
class Contract:
    """One manifest's suite as stored, with its rules checked to be named and unique."""

    manifest: str
    suite: dict[str, Any]

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(e["meta"]["rule"] for e in self.suite["expectations"])

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column an expectation reads (only these are handed to GX)."""
        cols = [e["kwargs"][k] for e in self.suite["expectations"] for k in _COLUMN_KWARGS if k in e["kwargs"]]
        return tuple(dict.fromkeys(cols))

    def description(self, rule: str) -> str:
        return next(e.get("description", rule) for e in self.suite["expectations"] if e["meta"]["rule"] == rule)


def load_contract(manifest: str, contracts_dir: str | Path = CONTRACTS_DIR) -> Contract:
    """Read `<contracts_dir>/<manifest>.json`; every expectation must carry a unique `meta.rule` `<manifest>.*`."""
    path = Path(contracts_dir) / f"{manifest}.json"
    try:
        suite = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ContractError(f"{path}: cannot read contract: {exc}") from exc
    rules = [(e.get("meta") or {}).get("rule") for e in suite.get("expectations", [])]
    bad = [r for r in rules if not isinstance(r, str) or not r.startswith(f"{manifest}.")]
    if bad or len(set(rules)) != len(rules):
        raise ContractError(f"{path}: every expectation needs a unique meta.rule '{manifest}.<name>'; got {rules}")
    return Contract(manifest, suite)


@functools.cache
def _context() -> Any:
    """The process's one GX context: ephemeral (nothing on disk), offline (no analytics), quiet (no bars)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.data_sources.add_pandas("validate")
    return context


@functools.cache
def _batch_definition(manifest: str) -> Any:
    """A whole-dataframe batch definition per manifest, reused for every frame of that manifest."""
    asset = _context().data_sources.get("validate").add_dataframe_asset(name=manifest)
    return asset.add_batch_definition_whole_dataframe(manifest)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; whole floats print as ints (8000.0 -> 8000)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _detail(description: str, entry: dict[str, Any]) -> str:
    values = ", ".join(f"{k}={_plain(v)!r}" if isinstance(_plain(v), str) else f"{k}={_plain(v)}"
                       for k, v in entry.items() if k != ROW)
    return f"{description}: {values}" if values else description


def _raised(exception_info: Any) -> str | None:
    """The exception message GX caught while evaluating an expectation, or None."""
    infos = [exception_info] if isinstance(exception_info, dict) and "raised_exception" in exception_info \
        else list((exception_info or {}).values())
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message"))
    return None


def evaluate(contract: Contract, frame: pl.DataFrame, parameters: dict[str, Any]) -> list[Violation]:
    """Run `contract` on `frame` (manifest columns + probes); one `Violation` per failing (row, rule)."""
    if frame.height == 0:
        return []
    missing = [c for c in contract.columns if c not in frame.columns]
    if missing:
        raise ContractError(f"contract {contract.manifest}: columns {missing} are neither manifest nor probe columns")
    import great_expectations as gx

    data = frame.select(pl.int_range(frame.height, dtype=pl.Int64).alias(ROW), *contract.columns).to_pandas()
    batch = _batch_definition(contract.manifest).get_batch(batch_parameters={"dataframe": data})
    result = batch.validate(gx.ExpectationSuite(**contract.suite), expectation_parameters=parameters,
                            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]})
    violations = []
    for r in result.results:
        rule = r.expectation_config.meta["rule"]
        error = _raised(r.exception_info)
        if error:
            raise ContractError(f"contract rule {rule} could not be evaluated: {error}")
        if r.success:
            continue
        entries = r.result.get("unexpected_index_list")
        if entries is None:
            raise ContractError(f"contract rule {rule} failed without naming rows; only row-level expectations belong")
        description = contract.description(rule)
        violations += [Violation(int(e[ROW]), rule, _detail(description, e)) for e in entries]
    return violations
