"""pack: task documents in the chat layout, packed whole into fixed-length rows, sharded per split with an index.

    dvc repro pack
    python -m flows.pack --params params.yaml --validated data/validated --tokens data/tokens \\
        --tokenizers models/tokenizers --out data/shards

Documents (rendered by `stages.documents`): one per validated sample and copy — ASR (user audio -> text), TTS
(user text -> interleaved text+audio), spoken QA and multi-turn audio chat (user audio -> interleaved answer),
sound-event classification and captioning (user audio -> text), each opened by a system instruction (one of a
few variants, chosen by a hash of the sample id and copy) — plus interleaved "pretraining" documents: several
speech utterances of the split as one assistant turn of alternating text and speech. `task_weights` sets the
train mix; val and test hold every sample once (weight 0 drops a task everywhere), so evaluation sees each
held-out sample exactly once. Val/test documents are built only from val/test samples and utterances.

Packing: documents are shuffled (seeded), then placed best-fit-decreasing into rows of `seq_len` tokens; a document
is never split (one longer than a row is dropped and counted), rows are padded with the pad id, doc id -1 and
ROLE_PAD, and the rows are shuffled before sharding. Output layout (`out_dir`):
- `{train,val,test}/shard-NNNNN.safetensors`: `input_ids` int32, `doc_ids` int32 (document index within the
  row, -1 for padding), `role` int8 (ROLE_*), each `[rows, seq_len]`.
- `index.parquet`: one row per packed document: `doc_id`, `split`, `task`, `sample_id` (empty for interleaved),
  `variant`, `shard`, `row`, `offset`, `length`, `doc_in_row`, `utt_ids` and `parent_ids` (lineage to the
  manifests), `prompt_len`, audio spans (`span_kinds`, `span_starts`, `span_lens`, positions within the
  document), `tail_start`, `tail_len`.
- `summary.json`: per split documents, rows, packing efficiency (non-pad fraction), drops by reason, shard bytes.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
from safetensors.numpy import save as save_safetensors

from model.vocab import ROLE_PAD, TokenSpec
from stages import io
from stages.documents import INSTRUCTIONS, AudioSpan, ChatTurn, Document, Utterance, render_chat, render_interleaved
from stages.fetch import SPLITS
from stages.tokenizers import TEXT_DIR

INTERLEAVED = "interleaved"
TASKS: tuple[str, ...] = (*INSTRUCTIONS, INTERLEAVED)
#: Added to `base.seed` so the pack stage's shuffles never share a random stream with another stage.
SEED_OFFSET = 5

INDEX_SCHEMA = {
    "doc_id": pl.String, "split": pl.String, "task": pl.String, "sample_id": pl.String, "variant": pl.Int64,
    "shard": pl.String, "row": pl.Int64, "offset": pl.Int64, "length": pl.Int64, "doc_in_row": pl.Int64,
    "utt_ids": pl.List(pl.String), "parent_ids": pl.List(pl.String), "prompt_len": pl.Int64,
    "span_kinds": pl.List(pl.String), "span_starts": pl.List(pl.Int64), "span_lens": pl.List(pl.Int64),
    "tail_start": pl.Int64, "tail_len": pl.Int64,
}


@dataclass(frozen=True)
class PackParams:
    """`pack` section of params.yaml."""

    seq_len: int = 1024
    """Tokens per packed row (the training sequence length)."""
    rows_per_shard: int = 256
    """Rows per shard file."""
    text_chunk: int = 13
    """Text tokens per chunk of an interleaved assistant turn."""
    audio_chunk: int = 26
    """Audio tokens per (non-tail) span of an interleaved assistant turn."""
    task_weights: dict[str, float] = field(default_factory=lambda: {t: 1.0 for t in TASKS})
    """Train documents per sample of each task (per speech utterance for `interleaved`): 0 drops the task, 0.5
    keeps a seeded half, 2 renders each sample twice (different instruction variants). Unlisted tasks get 1."""
    interleaved_min: int = 2
    """Fewest utterances in one interleaved document."""
    interleaved_max: int = 4
    """Most utterances in one interleaved document."""
    interleaved_speak_prob: float = 0.75
    """Probability that an interleaved piece is text-then-speech (else speech-then-transcript). Consecutive speaking
    pieces share one 13:26 run, so a higher value gives more chunk spans (the tiny corpus's single sentences are
    mostly shorter than one text chunk: 0.5 gives ~400 chunk spans, 0.75 ~830)."""

    def __post_init__(self) -> None:
        if self.seq_len < 16 or self.rows_per_shard < 1:
            raise ValueError("seq_len must be at least 16 and rows_per_shard at least 1")
        if self.text_chunk < 1 or self.audio_chunk < 1:
            raise ValueError("text_chunk and audio_chunk must be positive")
        unknown = sorted(set(self.task_weights) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown} in task_weights; known: {list(TASKS)}")
        if any(w < 0 or not math.isfinite(w) for w in self.task_weights.values()):
            raise ValueError("task weights must be finite and >= 0")
        if not 1 <= self.interleaved_min <= self.interleaved_max:
            raise ValueError("need 1 <= interleaved_min <= interleaved_max")
        if not 0.0 <= self.interleaved_speak_prob <= 1.0:
            raise ValueError("interleaved_speak_prob must lie in [0, 1]")

    def weight(self, task: str) -> float:
        return self.task_weights.get(task, 1.0)


# --- inputs ------------------------------------------------------------------------------------------------------
class CodeStore:
    """Audio codes by utterance id, read from the tokenize stage's npy shards through memory maps."""

    def __init__(self, tokens_dir: str | Path) -> None:
        self.root = Path(tokens_dir)
        index = pl.read_parquet(self.root / "index.parquet", columns=["utt_id", "shard", "offset", "length"])
        self._where = {u: (s, o, n) for u, s, o, n in index.iter_rows()}
        self._arrays: dict[str, np.ndarray] = {}

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._where

    @property
    def utt_ids(self) -> list[str]:
        return list(self._where)

    def get(self, utt_id: str) -> np.ndarray:
        shard, offset, length = self._where[utt_id]
        if shard not in self._arrays:
            self._arrays[shard] = np.load(io.resolve_inside(self.root, shard), mmap_mode="r", allow_pickle=False)
        return np.asarray(self._arrays[shard][offset:offset + length])


class TextEncoder:
    """Text -> ids with the stage's tokenizer (no special tokens added); repeated pieces hit a cache."""

    def __init__(self, tokenizer) -> None:
        backend = tokenizer.backend_tokenizer
        self._encode = lru_cache(maxsize=1 << 16)(lambda text: tuple(backend.encode(text, add_special_tokens=False).ids))

    def __call__(self, text: str) -> list[int]:
        return list(self._encode(text))


# --- planning ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DocPlan:
    """What one document will hold, before any token exists (small, so a split's plans fit in memory)."""

    doc_id: str
    split: str
    task: str
    sample_id: str
    variant: int
    turns: tuple[tuple[str, str, str | None], ...]
    """(role, text, utt_id) per chat turn; for interleaved documents ('speak' | 'listen', text, utt_id)."""
    parent_ids: tuple[str, ...]

    @property
    def utt_ids(self) -> list[str]:
        return [u for _, _, u in self.turns if u]


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed + SEED_OFFSET, *keys]))


def _copies(weight: float, train: bool, rng: np.random.Generator, n: int) -> np.ndarray:
    """Documents per item: train draws floor(w) plus one with probability frac(w); held-out splits keep one."""
    if not train:
        return np.full(n, int(weight > 0))
    return math.floor(weight) + (rng.random(n) < weight - math.floor(weight)).astype(int)


def plan_sample_documents(samples: pl.DataFrame, split: str, params: PackParams, seed: int, codes: CodeStore,
                          dropped: dict[str, int]) -> list[DocPlan]:
    """Documents from the chat samples of one split (sorted by sample id, so the plan is order-independent)."""
    unknown = sorted(set(samples["task"]) - set(INSTRUCTIONS))
    if unknown:
        raise ValueError(f"samples of task(s) {unknown} have no instructions in stages.documents.INSTRUCTIONS")
    plans = []
    for task in INSTRUCTIONS:
        rows = samples.filter(pl.col("task") == task).sort("sample_id")
        rng = _rng(seed, SPLITS.index(split), TASKS.index(task))
        copies = _copies(params.weight(task), split == "train", rng, rows.height)
        for row, n_copies in zip(rows.iter_rows(named=True), copies):
            turns = tuple((t["role"], t["text"], t["utt_id"]) for t in row["turns"])
            if any(u is not None and u not in codes for _, _, u in turns):
                dropped["missing_audio"] = dropped.get("missing_audio", 0) + int(n_copies)
                continue
            for copy in range(int(n_copies)):
                variant = int(io.sha256_text(row["sample_id"], str(copy))[:8], 16) % len(INSTRUCTIONS[task])
                plans.append(DocPlan(io.stable_id("doc", row["sample_id"], str(copy)), split, task,
                                     row["sample_id"], variant, turns, tuple(row["parent_ids"])))
    return plans


def plan_interleaved_documents(utterances: pl.DataFrame, split: str, params: PackParams, seed: int,
                               codes: CodeStore) -> list[DocPlan]:
    """Groups of `interleaved_min..max` speech utterances of one split, each piece speaking or listening."""
    speech = utterances.filter((pl.col("kind") != "sound") & (pl.col("text").str.len_chars() > 0)
                               & pl.col("utt_id").is_in(codes.utt_ids)).sort("utt_id")
    rng = _rng(seed, SPLITS.index(split), len(TASKS))
    copies = _copies(params.weight(INTERLEAVED), split == "train", rng, speech.height)
    slots = np.repeat(np.arange(speech.height), copies)
    rng.shuffle(slots)
    texts, ids, parents = speech["text"].to_list(), speech["utt_id"].to_list(), speech["parent_ids"].to_list()
    plans, start = [], 0
    while start < len(slots):
        group = slots[start:start + int(rng.integers(params.interleaved_min, params.interleaved_max + 1))]
        start += len(group)
        speak = rng.random(len(group)) < params.interleaved_speak_prob
        turns = tuple(("speak" if s else "listen", texts[i], ids[i]) for i, s in zip(group, speak))
        doc_id = io.stable_id("doc", split, INTERLEAVED, str(len(plans)), *(f"{r}:{u}" for r, _, u in turns))
        plans.append(DocPlan(doc_id, split, INTERLEAVED, "", -1, turns,
                             tuple(sorted({p for i in group for p in parents[i]}))))
    return plans


def check_split_hygiene(samples: pl.DataFrame, utterances: pl.DataFrame) -> None:
    """Every utterance a sample speaks must sit in the sample's split; anything else would leak held-out data."""
    split_of = dict(zip(utterances["utt_id"], utterances["split"]))
    for sample_id, split, turns in samples.select("sample_id", "split", "turns").iter_rows():
        for t in turns:
            if t["utt_id"] is not None and split_of.get(t["utt_id"], split) != split:
                raise ValueError(f"sample {sample_id} ({split}) uses utterance {t['utt_id']} of split "
                                 f"{split_of[t['utt_id']]}")


# --- rendering ---------------------------------------------------------------------------------------------------
def render(plan: DocPlan, spec: TokenSpec, encode: TextEncoder, codes: CodeStore, params: PackParams) -> Document:
    """Token ids of one planned document."""
    if plan.task == INTERLEAVED:
        pieces = [Utterance(text, codes.get(u), role == "speak") for role, text, u in plan.turns if u]
        return render_interleaved(pieces, spec, encode, params.text_chunk, params.audio_chunk)
    turns = [ChatTurn("system", INSTRUCTIONS[plan.task][plan.variant])]
    for role, text, utt_id in plan.turns:
        audio = codes.get(utt_id) if utt_id else None
        turns.append(ChatTurn(role, "" if role == "user" and audio is not None else text, audio))  # type: ignore[arg-type]
    return render_chat(turns, spec, encode, params.text_chunk, params.audio_chunk)


class _Spool:
    """Rendered documents' ids and roles appended to two files on disk, so memory stays flat as corpora grow."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._ids, self._roles = open(directory / "ids.bin", "wb"), open(directory / "roles.bin", "wb")
        self.starts: list[int] = []
        self.total = 0

    def add(self, doc: Document) -> None:
        self._ids.write(np.asarray(doc.ids, dtype=np.int32).tobytes())
        self._roles.write(np.asarray(doc.roles, dtype=np.int8).tobytes())
        self.starts.append(self.total)
        self.total += len(doc)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        self._ids.close()
        self._roles.close()
        if self.total == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.int8)
        return (np.memmap(self.dir / "ids.bin", dtype=np.int32, mode="r"),
                np.memmap(self.dir / "roles.bin", dtype=np.int8, mode="r"))


# --- packing -----------------------------------------------------------------------------------------------------
def pack_rows(lengths: np.ndarray, seq_len: int) -> list[list[int]]:
    """Best-fit decreasing: document indices per row, every row's lengths summing to at most `seq_len`.

    Ties keep the input order (a stable sort), so a seeded shuffle before packing decides which equal-length
    documents share a row. Each document goes to the open row it fills most tightly, found with a count of rows
    per remaining space.
    """
    if len(lengths) and int(lengths.max()) > seq_len:
        raise ValueError(f"a document of {int(lengths.max())} tokens cannot fit a {seq_len}-token row")
    rows: list[list[int]] = []
    count = np.zeros(seq_len + 1, dtype=np.int64)
    by_space: list[list[int]] = [[] for _ in range(seq_len + 1)]
    for doc in np.argsort(-np.asarray(lengths), kind="stable"):
        n = int(lengths[doc])
        fits = np.flatnonzero(count[n:])
        if fits.size:
            space = n + int(fits[0])
            row = by_space[space].pop()
            count[space] -= 1
        else:
            space, row = seq_len, len(rows)
            rows.append([])
        rows[row].append(int(doc))
        count[space - n] += 1
        by_space[space - n].append(row)
    return rows


@dataclass
class SplitResult:
    index: pl.DataFrame
    summary: dict[str, object]


def pack_split(split: str, plans: list[DocPlan], spec: TokenSpec, encode: TextEncoder, codes: CodeStore,
               params: PackParams, seed: int, out_dir: Path, dropped: dict[str, int]) -> SplitResult:
    """Render, pack and shard one split's documents; returns its index rows and summary."""
    order = _rng(seed, SPLITS.index(split), 99).permutation(len(plans))
    kept: list[tuple[DocPlan, _DocMeta]] = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".spool-") as tmp:
        spool = _Spool(Path(tmp))
        for i in order:
            doc = render(plans[i], spec, encode, codes, params)
            if len(doc) > params.seq_len:
                dropped["longer_than_seq_len"] = dropped.get("longer_than_seq_len", 0) + 1
                continue
            spool.add(doc)
            kept.append((plans[i], _DocMeta.of(doc)))
        ids_flat, roles_flat = spool.arrays()
        lengths = np.array([m.length for _, m in kept], dtype=np.int64)
        rows = pack_rows(lengths, params.seq_len)
        rows = [rows[r] for r in _rng(seed, SPLITS.index(split), 100).permutation(len(rows))]
        records, shard_bytes = [], 0
        for shard_no, first in enumerate(range(0, len(rows), params.rows_per_shard)):
            name = f"{split}/shard-{shard_no:05d}.safetensors"
            block = rows[first:first + params.rows_per_shard]
            tensors = _shard_tensors(block, spool.starts, lengths, ids_flat, roles_flat, spec, params.seq_len)
            data = save_safetensors(tensors)  # no metadata: its map is serialised in random order (bytes would vary)
            io.write_bytes(data, out_dir / name)
            shard_bytes += len(data)
            for r, docs in enumerate(block):
                offset = 0
                for d, k in enumerate(docs):
                    records.append(_index_record(*kept[k], name, r, offset, d))
                    offset += int(lengths[k])
        del ids_flat, roles_flat
    tokens = int(lengths.sum())
    index = pl.DataFrame(records, schema=INDEX_SCHEMA)
    per_task = dict(sorted(index.group_by("task").len().iter_rows())) if index.height else {}
    summary = {"documents": len(kept), "rows": len(rows), "shards": math.ceil(len(rows) / params.rows_per_shard),
               "tokens": tokens, "efficiency": round(tokens / (len(rows) * params.seq_len), 4) if rows else None,
               "docs_per_row": round(len(kept) / len(rows), 2) if rows else None, "per_task": per_task,
               "dropped": dict(sorted(dropped.items())), "shard_bytes": shard_bytes}
    return SplitResult(index, summary)


@dataclass(frozen=True)
class _DocMeta:
    """What the index keeps of a rendered document once its tokens are in the spool."""

    length: int
    prompt_len: int
    spans: tuple[AudioSpan, ...]
    tail: tuple[int, int]

    @classmethod
    def of(cls, doc: Document) -> "_DocMeta":
        return cls(len(doc), doc.prompt_len, tuple(doc.spans), doc.tail)


def _shard_tensors(block: list[list[int]], starts: list[int], lengths: np.ndarray, ids_flat: np.ndarray,
                   roles_flat: np.ndarray, spec: TokenSpec, seq_len: int) -> dict[str, np.ndarray]:
    input_ids = np.full((len(block), seq_len), spec.pad_id, dtype=np.int32)
    doc_ids = np.full((len(block), seq_len), -1, dtype=np.int32)
    role = np.full((len(block), seq_len), ROLE_PAD, dtype=np.int8)
    for r, docs in enumerate(block):
        offset = 0
        for d, k in enumerate(docs):
            n, s = int(lengths[k]), starts[k]
            input_ids[r, offset:offset + n] = ids_flat[s:s + n]
            role[r, offset:offset + n] = roles_flat[s:s + n]
            doc_ids[r, offset:offset + n] = d
            offset += n
    return {"input_ids": input_ids, "doc_ids": doc_ids, "role": role}


def _index_record(plan: DocPlan, doc: _DocMeta, shard: str, row: int, offset: int, doc_in_row: int) -> dict:
    tail_start, tail_len = doc.tail
    return {"doc_id": plan.doc_id, "split": plan.split, "task": plan.task, "sample_id": plan.sample_id,
            "variant": plan.variant, "shard": shard, "row": row, "offset": offset, "length": doc.length,
            "doc_in_row": doc_in_row, "utt_ids": plan.utt_ids, "parent_ids": list(plan.parent_ids),
            "prompt_len": doc.prompt_len, "span_kinds": [s.kind for s in doc.spans],
            "span_starts": [s.start for s in doc.spans], "span_lens": [s.length for s in doc.spans],
            "tail_start": tail_start, "tail_len": tail_len}


def run_pack(params: PackParams, seed: int, validated_dir: str | Path, tokens_dir: str | Path,
             tokenizers_dir: str | Path, out_dir: str | Path) -> dict[str, object]:
    """Build every split's documents, pack and shard them, and write `index.parquet` and `summary.json`."""
    from stages.text_tokenizer import load_tokenizer  # transformers: seconds, so only when packing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, spec = load_tokenizer(Path(tokenizers_dir) / TEXT_DIR)
    encode, codes = TextEncoder(tokenizer), CodeStore(tokens_dir)
    v = Path(validated_dir)
    samples, utterances = pl.read_parquet(v / "samples.parquet"), pl.read_parquet(v / "utterances.parquet")
    check_split_hygiene(samples, utterances)
    for stale in out.glob("*/shard-*.safetensors"):
        stale.unlink()
    indexes, summary = [], {"seq_len": params.seq_len, "splits": {}}
    for split in SPLITS:
        dropped: dict[str, int] = {}
        plans = plan_sample_documents(samples.filter(pl.col("split") == split), split, params, seed, codes, dropped)
        plans += plan_interleaved_documents(utterances.filter(pl.col("split") == split), split, params, seed, codes)
        result = pack_split(split, plans, spec, encode, codes, params, seed, out, dropped)
        indexes.append(result.index)
        summary["splits"][split] = result.summary  # type: ignore[index]
    io.write_parquet(pl.concat(indexes), out / "index.parquet")
    io.write_json(summary, out / "summary.json")
    return summary


def iter_row_documents(index: pl.DataFrame, shard: str, row: int) -> Iterator[dict]:
    """The index records of the documents packed into one shard row, in row order (lineage look-ups)."""
    yield from index.filter((pl.col("shard") == shard) & (pl.col("row") == row)).sort("offset").iter_rows(named=True)
