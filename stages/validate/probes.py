"""Row probe columns for the text manifests: what GX cannot see in one row of one table.

Each function returns its manifest with extra columns the contracts read. Problem probes (`*_problem`) are
strings, null when the row is fine, whose text is the quarantine detail: a split leak names the other split, a
cascade names the parent and the rule that sank it. Cross-row checks (a group or a text in two splits, a parent
fact in another split, a turn's utterance) are polars joins, so they stay vectorised at 100k+ rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from stages.io import resolve_inside

_I = "_i"  # row position while exploding / joining
#: Utterance kinds whose text is spoken content (a sound's text is a template caption, shared by design).
SPOKEN_KINDS = ("speech_user", "speech_assistant", "recorded")
TURN_ROLES = ("system", "user", "assistant")
#: At most this many messages per row in a detail (a chat with every turn broken stays readable).
_MAX_MESSAGES = 3


def _per_row(n: int, messages: pl.DataFrame) -> pl.Series:
    """Join the `_msg` strings of `messages` (`_i`, `_msg`) into one problem per row (null: none)."""
    grouped = messages.group_by(_I).agg(
        pl.col("_msg").head(_MAX_MESSAGES).str.join("; ").alias("_joined"), pl.len().alias("_n"))
    grouped = grouped.with_columns(
        pl.when(pl.col("_n") > _MAX_MESSAGES)
        .then(pl.col("_joined") + pl.lit("; and ") + (pl.col("_n") - _MAX_MESSAGES).cast(pl.String) + pl.lit(" more"))
        .otherwise(pl.col("_joined")).alias("_joined"))
    rows = pl.DataFrame({_I: pl.int_range(n, dtype=pl.Int64, eager=True)})
    return rows.join(grouped, on=_I, how="left", maintain_order="left")["_joined"]


def _indexed(df: pl.DataFrame, *columns: str) -> pl.DataFrame:
    return df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias(_I), *columns)


def chars(column: str) -> pl.Expr:
    """Characters left after stripping whitespace (0 for null)."""
    return pl.col(column).fill_null("").str.strip_chars().str.len_chars().cast(pl.Int64)


def split_conflicts(df: pl.DataFrame, key: pl.Expr, what: str, truth: pl.DataFrame | None = None) -> pl.Series:
    """Per row: why its `key` (a group, a text) sits in more than one split, or null.

    With `truth` (`_k`, `_truth`: the split the facts give a key) only the rows that disagree with it are named,
    so a leaked row does not take the rightful rows of its group down with it; without it every row of a key
    that spans splits is named, since nothing says which side is right. Null keys never conflict.
    """
    keyed = df.select(key.alias("_k"), pl.col("split"))
    spans = keyed.filter(pl.col("_k").is_not_null()).group_by("_k").agg(
        pl.col("split").drop_nulls().unique().sort().alias("_splits"))
    joined = keyed.join(spans, on="_k", how="left", maintain_order="left")
    joined = (joined.join(truth, on="_k", how="left", maintain_order="left") if truth is not None
              else joined.with_columns(pl.lit(None, pl.String).alias("_truth")))
    problem = (
        pl.when(pl.col("_truth").is_not_null() & (pl.col("_truth") != pl.col("split")))
        .then(pl.lit(f"{what} is in ") + pl.col("_truth") + pl.lit(" per its facts, the row in ") + pl.col("split"))
        .when(pl.col("_truth").is_null() & (pl.col("_splits").list.len() > 1))
        .then(pl.lit(f"{what} spans splits ") + pl.col("_splits").list.join(","))
        .otherwise(None))
    return joined.select(problem).to_series()


def group_splits(facts: pl.DataFrame) -> pl.DataFrame:
    """(`_k` group_id, `_truth` split) for every fact group whose facts agree on one split."""
    per_group = facts.filter(pl.col("group_id").is_not_null()).group_by("group_id").agg(
        pl.col("split").drop_nulls().unique().alias("_splits"))
    return per_group.filter(pl.col("_splits").list.len() == 1).select(
        pl.col("group_id").alias("_k"), pl.col("_splits").list.first().alias("_truth"))


def fact_splits(facts: pl.DataFrame) -> pl.DataFrame:
    """(fact_id, fact_split) pairs of the raw facts: the truth leak checks compare against."""
    return facts.select("fact_id", pl.col("split").alias("fact_split")).drop_nulls().unique()


def leaked_facts(df: pl.DataFrame, facts: pl.DataFrame) -> pl.Series:
    """Per row: the parent facts that sit in another split than the row (a held-out fact leaking into training)."""
    parents = _indexed(df, "split", "parent_ids").explode("parent_ids")
    leaks = parents.join(facts, left_on="parent_ids", right_on="fact_id", how="inner") \
        .filter(pl.col("fact_split") != pl.col("split"))
    return _per_row(df.height, leaks.select(
        _I, (pl.lit("parent fact ") + pl.col("parent_ids") + pl.lit(" is in ") + pl.col("fact_split")
             + pl.lit(", the row in ") + pl.col("split")).alias("_msg")))


def _encoding(encoding: Sequence[str | None]) -> pl.Series:
    return pl.Series("encoding_problem", list(encoding), dtype=pl.String)


def fact_probes(facts: pl.DataFrame, encoding: Sequence[str | None]) -> pl.DataFrame:
    return facts.with_columns(
        _encoding(encoding),
        split_conflicts(facts, pl.col("group_id"), "fact group").alias("group_split_problem"),
        chars("subject").alias("subject_chars"),
        chars("answer").alias("answer_chars"),
    )


def _audio_path_problem(path: str | None, audio_root: str) -> str | None:
    if path is None:
        return None
    if not audio_root:
        return f"audio_path {path!r} but the source has no audio_root"
    try:
        resolve_inside(audio_root, path)
    except ValueError as exc:
        return str(exc)
    return None


def utterance_probes(utts: pl.DataFrame, encoding: Sequence[str | None], facts: pl.DataFrame,
                     groups: pl.DataFrame, audio_root: str, audio_ids: set[str],
                     audio_failures: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """Probes for utterances.

    `facts` is `fact_splits`, `groups` is `group_splits`; `audio_ids` and `audio_failures` (utt_id -> rules)
    come from the audio verdict.
    """
    spoken_text = pl.when(pl.col("kind").is_in(SPOKEN_KINDS)).then(
        pl.col("text").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars())

    def audio_problem(utt_id: str | None) -> str | None:
        if utt_id is None:
            return None
        if utt_id not in audio_ids:
            return "no audio row"
        failed = audio_failures.get(utt_id)
        return f"audio quarantined ({', '.join(failed)})" if failed else None

    return utts.with_columns(
        _encoding(encoding),
        chars("text").alias("text_chars"),
        pl.Series("audio_path_problem", [_audio_path_problem(p, audio_root) for p in utts["audio_path"]],
                  dtype=pl.String),
        split_conflicts(utts, pl.col("group_id"), "group", groups).alias("group_split_problem"),
        split_conflicts(utts, spoken_text, "spoken text").alias("text_split_problem"),
        leaked_facts(utts, facts).alias("leak_problem"),
        pl.Series("audio_problem", [audio_problem(u) for u in utts["utt_id"]], dtype=pl.String),
    )


def audio_row_probes(audio: pl.DataFrame, encoding: Sequence[str | None], utts: pl.DataFrame) -> pl.DataFrame:
    """Row probes of the audio manifest that need no audio: its utterance, duration arithmetic."""
    first = {u: (t, s) for u, t, s in reversed(list(utts.select("utt_id", "text", "split").iter_rows()))}

    def utterance_problem(utt_id: str | None, text: str | None, split: str | None) -> str | None:
        if utt_id is None:
            return None
        if utt_id not in first:
            return "no such utterance"
        want_text, want_split = first[utt_id]
        if text != want_text:
            return f"text {text!r} differs from the utterance's {want_text!r}"
        if split != want_split:
            return f"split {split!r} differs from the utterance's {want_split!r}"
        return None

    return audio.with_columns(
        _encoding(encoding),
        pl.Series("utterance_problem", [utterance_problem(*row) for row in
                                        audio.select("utt_id", "text", "split").iter_rows()], dtype=pl.String),
        pl.when(pl.col("sample_rate") > 0)
        .then((pl.col("duration_s") - pl.col("n_samples") / pl.col("sample_rate")).abs())
        .alias("duration_error_s"),
    )


def sample_probes(samples: pl.DataFrame, encoding: Sequence[str | None], facts: pl.DataFrame, utts: pl.DataFrame,
                  utt_failures: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """Probes for samples: well-formed turns, known utterances in the same split, leaks, quarantined parents."""
    turns = (_indexed(samples, "split", "turns")
             .with_columns(pl.col("turns").list.eval(pl.int_range(pl.len())).alias("_t"))
             .explode("turns", "_t").filter(pl.col("turns").is_not_null()).unnest("turns"))
    turn = pl.lit("turn ") + pl.col("_t").cast(pl.String)
    malformed = turns.filter(~pl.col("role").is_in(TURN_ROLES).fill_null(False)).select(
        _I, (turn + pl.lit(" has role ") + pl.col("role").fill_null("null")).alias("_msg"))
    empty = turns.filter((chars("text") == 0) & pl.col("utt_id").is_null()).select(
        _I, (turn + pl.lit(" has neither text nor an utterance")).alias("_msg"))
    spoken = turns.filter(pl.col("utt_id").is_not_null()).join(
        utts.select("utt_id", pl.col("split").alias("utt_split")).unique("utt_id", keep="first"),
        on="utt_id", how="left")
    unknown = spoken.filter(pl.col("utt_split").is_null() & ~pl.col("utt_id").is_in(utts["utt_id"].implode()))
    moved = spoken.filter(pl.col("utt_split") != pl.col("split"))
    failed = pl.DataFrame({"utt_id": list(utt_failures), "_rules": [", ".join(r) for r in utt_failures.values()]},
                          schema={"utt_id": pl.String, "_rules": pl.String})
    quarantined = spoken.join(failed, on="utt_id", how="inner")
    return samples.with_columns(
        _encoding(encoding),
        pl.col("turns").list.len().fill_null(0).cast(pl.Int64).alias("n_turns"),
        _per_row(samples.height, pl.concat([malformed, empty])).alias("turn_problem"),
        _per_row(samples.height, unknown.select(_I, (turn + pl.lit(" names unknown utterance ") + pl.col("utt_id"))
                                                .alias("_msg"))).alias("utt_ref_problem"),
        _per_row(samples.height, moved.select(
            _I, (turn + pl.lit(" utterance ") + pl.col("utt_id") + pl.lit(" is in ") + pl.col("utt_split"))
            .alias("_msg"))).alias("turn_split_problem"),
        leaked_facts(samples, facts).alias("leak_problem"),
        _per_row(samples.height, quarantined.select(
            _I, (turn + pl.lit(" utterance ") + pl.col("utt_id") + pl.lit(" quarantined (") + pl.col("_rules")
                 + pl.lit(")")).alias("_msg"))).alias("parent_problem"),
    )
