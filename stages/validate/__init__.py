"""validate: data contracts on every manifest; bad rows to quarantine with the rule they broke.

    dvc repro validate
    python -m flows.validate --params params.yaml --raw data/raw --audio data/audio --out data/validated \
        --report reports/validation.json

Inputs are the fetch outputs (`facts`, `utterances`, `samples` parquet + `source.json`) and the synthesize
outputs (`manifest.parquet` + `shards/*.parquet`). Each manifest is checked by its great-expectations suite in
`data_contracts/` (`contracts`), over its columns plus probe columns computed here (`probes`, `audio_probes`:
decoded audio, UTF-8, paths inside the data root, split leaks, cascades). Outputs, all written atomically:

- `out/{facts,utterances,samples,audio}.parquet`: the rows that passed, columns unchanged (audio rows still
  point at shards under the audio directory).
- `out/quarantine.parquet`: one row per (failing row, rule): manifest, row_index, row_id, rule, detail.
- the report (a DVC metric): rows checked / passed / quarantined and failures per rule, per manifest.

The stage fails (`ValidationError`, after writing all of the above) when any manifest's quarantine fraction
exceeds `max_quarantine_fraction`.
"""

from stages.validate.errors import ContractError, ValidationError
from stages.validate.params import ValidateParams
from stages.validate.stage import ManifestReport, ValidationResult, run_validate

__all__ = ["ContractError", "ManifestReport", "ValidateParams", "ValidationError", "ValidationResult", "run_validate"]
