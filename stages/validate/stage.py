"""Run every manifest through its contract, write what passed, quarantine the rest, and judge the run.

Order matters because verdicts cascade downwards along lineage: audio first (an utterance without good audio
is useless), then utterances (`utterances.audio_present` reads the audio verdict), then samples
(`samples.parent_quarantined` reads the utterance verdict). Finally an audio row whose utterance was
quarantined for its own reasons is dropped too (`audio.utterance_quarantined`, the one rule that cannot live in
a contract, because it would make the audio and utterance contracts depend on each other). So every output
row has every parent in the outputs, and nothing is dropped that no rule names.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from stages import io
from stages.fetch import FACT_SCHEMA, SAMPLE_SCHEMA, UTTERANCE_SCHEMA
from stages.synthesize import AUDIO_MANIFEST_SCHEMA
from stages.validate import probes
from stages.validate.audio_probes import MapShards, shard_probes
from stages.validate.contracts import CONTRACTS_DIR, Violation, evaluate, load_contract
from stages.validate.errors import ValidationError
from stages.validate.manifests import read_manifest
from stages.validate.params import ValidateParams

log = logging.getLogger(__name__)

#: Manifests in report order, with the column that identifies a row.
ID_COLUMNS = {"facts": "fact_id", "utterances": "utt_id", "samples": "sample_id", "audio": "utt_id"}
#: The cascade enforced in code (see the module docstring).
UTTERANCE_QUARANTINED = "audio.utterance_quarantined"
QUARANTINE_SCHEMA = {"manifest": pl.String, "row_index": pl.Int64, "row_id": pl.String, "rule": pl.String,
                     "detail": pl.String}
#: Rules named in the failure message.
_TOP_RULES = 5


@dataclass(frozen=True)
class ManifestReport:
    """Counts for one manifest."""

    checked: int
    passed: int
    rules: dict[str, int]
    """Failing rows per rule, every rule listed (0 included) so metric diffs have stable keys."""

    @property
    def quarantined(self) -> int:
        return self.checked - self.passed

    @property
    def quarantine_fraction(self) -> float:
        return self.quarantined / self.checked if self.checked else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "passed": self.passed, "quarantined": self.quarantined,
                "quarantine_fraction": round(self.quarantine_fraction, 6), "rules": dict(sorted(self.rules.items()))}


@dataclass(frozen=True)
class ValidationResult:
    """What `run_validate` found (also what `ValidationError` reports on the failing path)."""

    manifests: dict[str, ManifestReport]
    max_quarantine_fraction: float

    @property
    def over_threshold(self) -> list[str]:
        return [m for m, r in self.manifests.items() if r.quarantine_fraction > self.max_quarantine_fraction]

    @property
    def passed(self) -> bool:
        return not self.over_threshold

    def as_report(self) -> dict[str, Any]:
        """The `reports/validation.json` metric."""
        return {"max_quarantine_fraction": self.max_quarantine_fraction, "passed": self.passed,
                "checked": sum(r.checked for r in self.manifests.values()),
                "quarantined": sum(r.quarantined for r in self.manifests.values()),
                "manifests": {name: r.as_dict() for name, r in self.manifests.items()}}


class _Verdict:
    """The violations of one manifest and the row positions they sink."""

    def __init__(self, manifest: str, frame: pl.DataFrame, violations: Iterable[Violation], rules: Iterable[str]):
        self.manifest, self.frame = manifest, frame
        self.violations = list(violations)
        self.rules = tuple(rules)
        self.failed = {v.row for v in self.violations}

    def add(self, violations: Iterable[Violation]) -> None:
        new = list(violations)
        self.violations += new
        self.failed |= {v.row for v in new}

    def ids(self) -> list[str | None]:
        return self.frame[ID_COLUMNS[self.manifest]].to_list()

    def rules_by_id(self) -> dict[str, list[str]]:
        """row id -> the sorted rules its failing rows broke (ids that are null are left out)."""
        ids = self.ids()
        out: dict[str, set[str]] = {}
        for v in self.violations:
            if ids[v.row] is not None:
                out.setdefault(ids[v.row], set()).add(v.rule)
        return {k: sorted(r) for k, r in out.items()}

    def passed_rows(self, columns: list[str]) -> pl.DataFrame:
        keep = pl.Series([i not in self.failed for i in range(self.frame.height)], dtype=pl.Boolean)
        return self.frame.select(columns).filter(keep)

    def quarantine(self) -> pl.DataFrame:
        ids = self.ids()
        rows = {(v.row, v.rule): v.detail for v in self.violations}  # one row per (row, rule)
        return pl.DataFrame([(self.manifest, row, ids[row], rule, detail) for (row, rule), detail in rows.items()],
                            schema=QUARANTINE_SCHEMA, orient="row")

    def report(self) -> ManifestReport:
        counts = Counter(rule for _, rule in {(v.row, v.rule) for v in self.violations})
        return ManifestReport(self.frame.height, self.frame.height - len(self.failed),
                              {r: counts.get(r, 0) for r in self.rules})


def _check(manifest: str, frame: pl.DataFrame, params: ValidateParams, contracts_dir: Path,
           extra_rules: tuple[str, ...] = ()) -> _Verdict:
    contract = load_contract(manifest, contracts_dir)
    violations = evaluate(contract, frame, params.suite_parameters())
    log.info("%s: %d rows, %d violations", manifest, frame.height, len(violations))
    return _Verdict(manifest, frame, violations, contract.rules + extra_rules)


def _failure_message(result: ValidationResult, report_path: Path, quarantine_path: Path) -> str:
    lines = [f"validation failed: quarantine fraction above {result.max_quarantine_fraction} in "
             + ", ".join(f"{m} ({r.quarantined}/{r.checked} = {r.quarantine_fraction:.3f})"
                         for m, r in result.manifests.items() if m in result.over_threshold)]
    for m in result.over_threshold:
        top = Counter(result.manifests[m].rules).most_common(_TOP_RULES)
        lines.append(f"  {m}: " + ", ".join(f"{rule} x{n}" for rule, n in top if n))
    lines.append(f"see {report_path} and {quarantine_path}")
    return "\n".join(lines)


def run_validate(params: ValidateParams, raw_dir: str | Path, audio_dir: str | Path, out_dir: str | Path,
                 report_path: str | Path, contracts_dir: str | Path = CONTRACTS_DIR,
                 map_shards: MapShards = map) -> ValidationResult:
    """Validate the fetch and synthesize manifests; write passing rows, the quarantine and the report.

    `map_shards` maps `audio_probes.probe_shard` over the audio shards (default: in this process, one by one;
    pass a pool's `map`, e.g. a spawn-context `ProcessPoolExecutor`, to decode on several cores).

    Raises `ValidationError` (after writing everything) when a manifest's quarantine fraction exceeds
    `params.max_quarantine_fraction`, or before writing anything when a manifest is missing or mis-typed.
    """
    raw, audio_dir, out, contracts = Path(raw_dir), Path(audio_dir), Path(out_dir), Path(contracts_dir)
    audio_root = str(json.loads((raw / "source.json").read_text()).get("audio_root") or "")
    facts, facts_enc = read_manifest(raw / "facts.parquet", FACT_SCHEMA)
    utts, utts_enc = read_manifest(raw / "utterances.parquet", UTTERANCE_SCHEMA)
    samples, samples_enc = read_manifest(raw / "samples.parquet", SAMPLE_SCHEMA)
    audio, audio_enc = read_manifest(audio_dir / "manifest.parquet", AUDIO_MANIFEST_SCHEMA)
    truth = probes.fact_splits(facts)

    facts_v = _check("facts", probes.fact_probes(facts, facts_enc), params, contracts)
    audio_frame = pl.concat(
        [probes.audio_row_probes(audio, audio_enc, utts), shard_probes(audio, audio_dir, map_shards)], how="horizontal")
    audio_v = _check("audio", audio_frame, params, contracts, extra_rules=(UTTERANCE_QUARANTINED,))
    utts_v = _check("utterances", probes.utterance_probes(utts, utts_enc, truth, probes.group_splits(facts),
                                                          audio_root, set(audio["utt_id"].drop_nulls()),
                                                          audio_v.rules_by_id()), params, contracts)
    utt_failures = utts_v.rules_by_id()
    audio_v.add(Violation(i, UTTERANCE_QUARANTINED, f"utterance {u} quarantined ({', '.join(utt_failures[u])})")
                for i, u in enumerate(audio["utt_id"]) if i not in audio_v.failed and u in utt_failures)
    samples_v = _check("samples", probes.sample_probes(samples, samples_enc, truth, utts, utt_failures),
                       params, contracts)

    verdicts = {"facts": (facts_v, facts), "utterances": (utts_v, utts), "samples": (samples_v, samples),
                "audio": (audio_v, audio)}
    for name, (verdict, manifest) in verdicts.items():
        io.write_parquet(verdict.passed_rows(manifest.columns), out / f"{name}.parquet")
    quarantine_path = io.write_parquet(
        pl.concat([v.quarantine() for v, _ in verdicts.values()]).sort("manifest", "row_index", "rule"),
        out / "quarantine.parquet")
    result = ValidationResult({name: v.report() for name, (v, _) in verdicts.items()}, params.max_quarantine_fraction)
    io.write_json(result.as_report(), report_path)
    if not result.passed:
        raise ValidationError(_failure_message(result, Path(report_path), quarantine_path))
    return result
