"""lineage: where every piece of data went, answered with DuckDB straight from the parquet manifests and shard index.

    ttt lineage shard train/shard-00000.safetensors   # which samples, voices and texts a shard holds
    ttt lineage run                                    # what the checkpoint of dvc.lock's train stage was trained on
    ttt lineage where smp-0086e300f1a19fe3             # where a sample / utterance / fact / document went
    ttt lineage leaks --split test                     # proof that no held-out data reached training (exit 1 if any)

Tables (DuckDB views over the files, nothing is copied): `docs` = the pack stage's `index.parquet` (one row per
packed document: split, task, sample_id, shard, row, offset, utt_ids, parent_ids), and the validated manifests
`samples`, `utterances`, `audio` (voice, duration) and `facts`. A training run is tied to its data by `dvc.lock`:
the train stage's entry records the hash of every input (`data/shards`, the tokenizers) and of the checkpoint.

The leak check looks for any of four ways held-out data could reach a training document: a document whose
lineage (`parent_ids`) names a held-out fact, whose audio is a held-out utterance, whose sample is a held-out
sample, or whose text contains a held-out sample's sentence verbatim (sound captions excepted: the same caption
legitimately describes many clips). Sound and fact ids are checked by id; text by exact string.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import duckdb
import polars as pl
import yaml

#: The views and the files they read (relative to the validated directory, or the shards directory for `docs`).
MANIFESTS = {"samples": "samples.parquet", "utterances": "utterances.parquet", "audio": "audio.parquet",
             "facts": "facts.parquet"}
INDEX = "index.parquet"
SOUND_TASKS = ("sound_cls", "sound_caption")

_LEAKS_SQL = """
WITH train AS (SELECT * FROM docs WHERE split = 'train'),
train_parents AS (SELECT doc_id, shard, "row", task, unnest(parent_ids) AS id FROM train),
train_utts AS (SELECT doc_id, shard, "row", task, unnest(utt_ids) AS id FROM train),
train_texts AS (
    SELECT t.doc_id, t.shard, t."row", t.task, turn.text AS text
    FROM (SELECT train.*, unnest(s.turns) AS turn FROM train JOIN samples s USING (sample_id)) t
    UNION ALL
    SELECT u.doc_id, u.shard, u."row", u.task, m.text FROM train_utts u JOIN utterances m ON m.utt_id = u.id),
held_texts AS (
    SELECT DISTINCT turn.text AS text, sample_id
    FROM (SELECT sample_id, unnest(turns) AS turn FROM samples WHERE split = $split AND NOT list_contains($sound, task))
    WHERE turn.text <> '')
SELECT 'held-out fact in lineage' AS rule, p.doc_id, p.shard, p."row", p.task, p.id AS held_out_id
    FROM train_parents p JOIN facts f ON f.fact_id = p.id WHERE f.split = $split
UNION ALL
SELECT 'held-out utterance', u.doc_id, u.shard, u."row", u.task, u.id
    FROM train_utts u JOIN utterances m ON m.utt_id = u.id WHERE m.split = $split
UNION ALL
SELECT 'held-out sample', d.doc_id, d.shard, d."row", d.task, d.sample_id
    FROM train d JOIN samples s USING (sample_id) WHERE s.split = $split
UNION ALL
SELECT 'held-out text', t.doc_id, t.shard, t."row", t.task, h.sample_id
    FROM train_texts t JOIN held_texts h ON t.text = h.text
ORDER BY rule, doc_id, held_out_id
"""

_CONTENTS_SQL = """
WITH d AS (
    SELECT doc_id, split, task, sample_id, shard, "row", "offset",
           unnest(CASE WHEN len(utt_ids) = 0 THEN [NULL::VARCHAR] ELSE utt_ids END) AS utt_id
    FROM docs WHERE {where})
SELECT d.shard, d."row", d."offset", d.doc_id, d.split, d.task, d.sample_id, d.utt_id, u.kind, a.voice,
       a.duration_s, u.text
FROM d LEFT JOIN utterances u USING (utt_id) LEFT JOIN audio a USING (utt_id)
ORDER BY d.shard, d."row", d."offset", d.utt_id
"""


class LineageError(RuntimeError):
    """A lineage question that cannot be answered from the given files."""


class Lineage:
    """DuckDB views over one pipeline's manifests and shard index (see the module docstring)."""

    def __init__(self, validated_dir: str | Path, shards_dir: str | Path) -> None:
        self.con = duckdb.connect()
        files = {name: Path(validated_dir) / file for name, file in MANIFESTS.items()}
        files["docs"] = Path(shards_dir) / INDEX
        missing = [str(f) for f in files.values() if not f.is_file()]
        if missing:
            raise LineageError(f"missing lineage inputs: {missing} (run the pipeline up to `dvc repro pack`)")
        for name, path in files.items():
            literal = str(path).replace("'", "''")
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{literal}')")

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        return self.con.sql(sql, params=params or {}).pl()

    def contents(self, *, shard: str | None = None, split: str | None = None) -> pl.DataFrame:
        """One row per (document, utterance) of a shard or a split: sample, task, voice, duration and text."""
        if (shard is None) == (split is None):
            raise ValueError("give exactly one of shard or split")
        where, value = ("shard = $v", shard) if shard is not None else ("split = $v", split)
        return self.query(_CONTENTS_SQL.format(where=where), {"v": value})

    def summary(self, contents: pl.DataFrame) -> pl.DataFrame:
        """Per task and voice: documents, distinct samples, utterances and audio hours of a `contents` frame."""
        return (contents.group_by("task", "voice")
                .agg(docs=pl.col("doc_id").n_unique(), samples=pl.col("sample_id").filter(pl.col("sample_id") != "")
                     .n_unique(), utterances=pl.col("utt_id").drop_nulls().n_unique(),
                     hours=(pl.col("duration_s").sum() / 3600).round(3))
                .sort("task", "voice", nulls_last=True))

    def overview(self) -> pl.DataFrame:
        """Documents per split and task, with the shards they fill."""
        return self.query("""SELECT split, task, count(*) AS docs, count(DISTINCT NULLIF(sample_id, '')) AS samples,
                                    count(DISTINCT shard) AS shards, sum(length)::BIGINT AS tokens
                             FROM docs GROUP BY ALL ORDER BY split, task""")

    def where(self, any_id: str) -> pl.DataFrame:
        """Every packed document a sample, utterance, fact (lineage parent) or document id reached."""
        return self.query("""SELECT CASE WHEN doc_id = $id THEN 'document' WHEN sample_id = $id THEN 'sample'
                                         WHEN list_contains(utt_ids, $id) THEN 'utterance' ELSE 'parent' END AS via,
                                    doc_id, split, task, sample_id, shard, "row", "offset", length
                             FROM docs
                             WHERE doc_id = $id OR sample_id = $id OR list_contains(utt_ids, $id)
                                   OR list_contains(parent_ids, $id)
                             ORDER BY split, shard, "row", "offset"
                          """, {"id": any_id})

    def describe(self, any_id: str) -> pl.DataFrame:
        """Which manifest holds the id, with its split and text (empty when no manifest does)."""
        return self.query("""SELECT 'sample' AS manifest, split, task AS kind, answer AS text FROM samples
                                 WHERE sample_id = $id
                             UNION ALL SELECT 'utterance', split, kind, text FROM utterances WHERE utt_id = $id
                             UNION ALL SELECT 'fact', split, relation, subject || ': ' || answer FROM facts
                                 WHERE fact_id = $id""", {"id": any_id})

    def leaks(self, split: str = "test") -> pl.DataFrame:
        """Every training document carrying data of the held-out `split` (empty = no leak); see the module docstring."""
        if split == "train":
            raise ValueError("the leak check compares training documents with a held-out split (val or test)")
        return self.query(_LEAKS_SQL, {"split": split, "sound": list(SOUND_TASKS)})


def locked_stage(lock_path: str | Path, stage: str = "train") -> dict[str, dict[str, str]]:
    """`{"deps": {path: md5}, "outs": {path: md5}}` of a stage in dvc.lock: the exact data a run consumed."""
    path = Path(lock_path)
    if not path.is_file():
        raise LineageError(f"no {path}: run `dvc repro {stage}` first")
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    if stage not in stages:
        raise LineageError(f"{path} has no '{stage}' stage (locked: {sorted(stages)}); run `dvc repro {stage}`")
    entry = stages[stage]
    return {kind: {e["path"]: e.get("md5", "") for e in entry.get(kind, [])} for kind in ("deps", "outs")}


def markdown(df: pl.DataFrame, limit: int | None = None) -> str:
    """A DataFrame as a Markdown table (floats to 4 significant digits, `limit` rows with a note of the rest)."""
    shown = df if limit is None else df.head(limit)

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.iter_rows()]
    if limit is not None and df.height > limit:
        lines.append(f"\n… {df.height - limit} more rows")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`ttt lineage` (arguments in `flows.cli`): answer one question; 0 on success (and a clean leak check), 1 when
    a leak is found, 2 when the question cannot be answered."""
    out = out or sys.stdout
    try:
        lin = Lineage(args.validated, args.shards)
        if args.question == "shard":
            rows = lin.contents(shard=args.shard)
            if rows.is_empty():
                raise LineageError(f"no documents in shard {args.shard!r}; shards look like "
                                   "'train/shard-00000.safetensors'")
            print(f"# {args.shard}\n\n{markdown(lin.summary(rows))}\n\n{markdown(rows, args.limit)}", file=out)
        elif args.question == "run":
            locked = locked_stage(args.lock, args.stage)
            hashes = pl.DataFrame([{"kind": k, "path": p, "md5": h} for k in ("deps", "outs")
                                   for p, h in locked[k].items() if p.startswith(("data/", "models/"))])
            rows = lin.contents(split="train")
            print(f"# training data of `{args.stage}` ({args.lock})\n\n{markdown(hashes)}\n\n"
                  f"{markdown(lin.summary(rows))}\n\n{markdown(rows, args.limit)}", file=out)
        elif args.question == "where":
            found, described = lin.where(args.id), lin.describe(args.id)
            if found.is_empty() and described.is_empty():
                raise LineageError(f"{args.id!r} is in no manifest and no packed document")
            print(f"# {args.id}\n\n{markdown(described)}\n\n{markdown(found, args.limit)}", file=out)
        else:
            leaks = lin.leaks(args.split)
            if leaks.is_empty():
                print(f"no {args.split} data in any training document (facts, utterances, samples, texts checked)",
                      file=out)
                return 0
            print(f"LEAK: {leaks.height} training document(s) carry {args.split} data\n\n"
                  f"{markdown(leaks.group_by('rule').len().sort('rule'))}\n\n{markdown(leaks, args.limit)}", file=out)
            return 1
        return 0
    except LineageError as exc:
        print(f"ttt lineage: error: {exc}", file=sys.stderr)
        return 2
