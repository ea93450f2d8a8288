"""fetch: build the source corpus as three parquet manifests (facts, utterances, samples).

    dvc repro fetch
    python -m flows.fetch --params params.yaml --out data/raw

The embedded default (`source: synthetic`) draws task samples from `stages.facts` with a seeded generator;
`librispeech` and `jsonl` read a local dataset instead (see `stages.local_sources`). Either way the outputs are:

- `facts.parquet`: one row per fact with its split (synthetic only; empty for local data).
- `utterances.parquet`: every piece of audio the corpus needs, one row each: speech to synthesize (text +
  `kind` = speech_user / speech_assistant), recorded speech (`audio_path` relative to `audio_root`) or a
  procedural sound (`sound_class`, `sound_seed`, caption in `text`).
- `samples.parquet`: task samples (asr, tts, qa, chat, sound_cls, sound_caption) as chat turns; a turn with an
  `utt_id` is spoken (user) or spoken-and-written (assistant), a turn without one is plain text.

Splits are drawn per fact *group* (DESIGN: disjoint by fact), so a held-out fact never reaches training.
Every row has a stable content-derived id, its parents (fact ids) and a sha256 of its content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from stages import io, local_sources
from stages.facts import Fact, all_facts
from stages.sounds import SOUND_CLASSES, generate_sound

SPLITS = ("train", "val", "test")

UTTERANCE_SCHEMA = {
    "utt_id": pl.String, "kind": pl.String, "text": pl.String, "sound_class": pl.String, "sound_seed": pl.Int64,
    "audio_path": pl.String, "split": pl.String, "group_id": pl.String, "parent_ids": pl.List(pl.String),
    "source": pl.String, "sha256": pl.String,
}
FACT_SCHEMA = {
    "fact_id": pl.String, "group_id": pl.String, "relation": pl.String, "subject": pl.String, "answer": pl.String,
    "split": pl.String, "source": pl.String,
}
TURN = pl.Struct({"role": pl.String, "text": pl.String, "utt_id": pl.String})
SAMPLE_SCHEMA = {
    "sample_id": pl.String, "task": pl.String, "split": pl.String, "answer": pl.String,
    "parent_ids": pl.List(pl.String), "turns": pl.List(TURN), "source": pl.String, "sha256": pl.String,
}


@dataclass(frozen=True)
class FetchParams:
    """`fetch` section of params.yaml."""

    source: Literal["synthetic", "librispeech", "jsonl"] = "synthetic"
    """Which corpus to build: the embedded synthetic one, or a local LibriSpeech-layout dir / JSONL manifest."""
    local_path: str = ""
    """LibriSpeech root directory or JSONL file (for the local sources); audio paths resolve inside its folder."""
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    """train/val/test fractions of fact groups (synthetic) or transcripts (local)."""
    n_asr: int = 1200
    """ASR samples: a user speaks a statement, the assistant writes it."""
    n_tts: int = 600
    """TTS samples: the user writes a statement, the assistant speaks it."""
    n_qa: int = 600
    """Spoken-QA samples: spoken question, spoken-and-written one-sentence answer."""
    n_chat: int = 150
    """Multi-turn audio-chat dialogues (2..max_chat_turns question/answer exchanges)."""
    max_chat_turns: int = 3
    """Most exchanges in one dialogue."""
    n_sound: int = 300
    """Procedural sound clips; each gives one classification and one captioning sample."""
    min_city_population: int = 500_000
    """Cities at least this big become 'in which country is X' facts."""
    max_operand: int = 20
    """Arithmetic facts use operands 0..max_operand."""
    max_number: int = 100
    """Counting facts ask for the successor of 0..max_number-1."""
    sources: tuple[str, ...] = field(default=("geography", "arithmetic", "counting"))
    """Fact families to draw from (relation groups of `stages.facts`)."""

    def __post_init__(self) -> None:
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6 or min(self.split_fractions) <= 0:
            raise ValueError(f"split_fractions must be three positive numbers summing to 1, got {self.split_fractions}")
        for name in ("n_asr", "n_tts", "n_qa", "n_chat", "n_sound"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_chat_turns < 2:
            raise ValueError("max_chat_turns must be >= 2")
        if self.source != "synthetic" and not self.local_path:
            raise ValueError(f"source '{self.source}' needs local_path")
        unknown = set(self.sources) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown fact families {sorted(unknown)}; known: {sorted(FAMILIES)}")


FAMILIES = {
    "geography": {"capital", "currency", "continent", "language", "city_country"},
    "arithmetic": {"addition", "subtraction"},
    "counting": {"successor"},
}


def assign_split(key: str, seed: int, fractions: tuple[float, ...]) -> str:
    """Deterministic split of a group key: a seeded hash mapped to [0, 1) and cut at the cumulative fractions."""
    u = int(io.sha256_text(str(seed), key)[:15], 16) / 16**15
    edges = np.cumsum(fractions)
    return SPLITS[int(np.searchsorted(edges, u, side="right"))] if u < edges[-1] else SPLITS[-1]


class _CorpusBuilder:
    """Accumulates utterances (deduplicated by content) and samples."""

    def __init__(self) -> None:
        self.utterances: dict[str, dict] = {}
        self.samples: dict[str, dict] = {}

    def utterance(self, kind: str, text: str, split: str, group_id: str, parents: list[str], source: str,
                  sound_class: str | None = None, sound_seed: int | None = None, audio_path: str | None = None) -> str:
        content = [kind, text, sound_class or "", str(sound_seed if sound_seed is not None else ""), audio_path or ""]
        utt_id = io.stable_id("utt", *content)
        row = self.utterances.get(utt_id)
        if row is None:
            self.utterances[utt_id] = dict(utt_id=utt_id, kind=kind, text=text, sound_class=sound_class,
                                           sound_seed=sound_seed, audio_path=audio_path, split=split,
                                           group_id=group_id, parent_ids=sorted(set(parents)), source=source,
                                           sha256=io.sha256_text(*content))
        elif row["split"] != split:
            raise AssertionError(f"utterance {utt_id} ({text!r}) would sit in two splits")
        else:
            row["parent_ids"] = sorted(set(row["parent_ids"]) | set(parents))
        return utt_id

    def sample(self, task: str, split: str, turns: list[dict], parents: list[str], source: str,
               answer: str = "") -> None:
        content = [task, answer] + [f"{t['role']}|{t['text']}|{t['utt_id'] or ''}" for t in turns]
        sample_id = io.stable_id("smp", *content)
        self.samples.setdefault(sample_id, dict(sample_id=sample_id, task=task, split=split, answer=answer,
                                                parent_ids=sorted(set(parents)), turns=turns, source=source,
                                                sha256=io.sha256_text(*content)))

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        utts = pl.DataFrame(sorted(self.utterances.values(), key=lambda r: r["utt_id"]), schema=UTTERANCE_SCHEMA)
        samples = pl.DataFrame(sorted(self.samples.values(), key=lambda r: r["sample_id"]), schema=SAMPLE_SCHEMA)
        return utts, samples


def _turn(role: str, text: str, utt_id: str | None = None) -> dict:
    return {"role": role, "text": text, "utt_id": utt_id}


def build_synthetic(params: FetchParams, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The embedded corpus: (facts, utterances, samples), a pure function of the params and seed."""
    relations = set().union(*(FAMILIES[f] for f in params.sources))
    facts = [f for f in all_facts(params.min_city_population, params.max_operand, params.max_number)
             if f.relation in relations]
    split_of = {f.fact_id: assign_split(f.group_id, seed, params.split_fractions) for f in facts}
    by_relation: dict[str, list[Fact]] = {}
    for f in facts:
        by_relation.setdefault(f.relation, []).append(f)
    relation_names = sorted(by_relation)
    rng = np.random.default_rng(seed)

    def draw_fact() -> Fact:  # relations uniformly, then a fact within it, so no relation dominates
        pool = by_relation[relation_names[rng.integers(len(relation_names))]]
        return pool[rng.integers(len(pool))]

    def pick(options: tuple[str, ...]) -> str:
        return options[rng.integers(len(options))]

    b = _CorpusBuilder()
    for _ in range(params.n_asr):
        f = draw_fact()
        s, text = split_of[f.fact_id], pick(f.statements)
        u = b.utterance("speech_user", text, s, f.group_id, [f.fact_id], f.source)
        b.sample("asr", s, [_turn("user", text, u), _turn("assistant", text)], [f.fact_id], f.source, answer=text)
    for _ in range(params.n_tts):
        f = draw_fact()
        s, text = split_of[f.fact_id], pick(f.statements)
        u = b.utterance("speech_assistant", text, s, f.group_id, [f.fact_id], f.source)
        b.sample("tts", s, [_turn("user", text), _turn("assistant", text, u)], [f.fact_id], f.source, answer=text)
    for _ in range(params.n_qa):
        f = draw_fact()
        s, q = split_of[f.fact_id], pick(f.questions)
        uq = b.utterance("speech_user", q, s, f.group_id, [f.fact_id], f.source)
        ua = b.utterance("speech_assistant", f.spoken_answer, s, f.group_id, [f.fact_id], f.source)
        b.sample("qa", s, [_turn("user", q, uq), _turn("assistant", f.spoken_answer, ua)], [f.fact_id], f.source,
                 answer=f.answer)
    facts_by_split: dict[str, list[Fact]] = {sp: [f for f in facts if split_of[f.fact_id] == sp] for sp in SPLITS}
    split_weights = np.array(params.split_fractions)
    for _ in range(params.n_chat):
        s = SPLITS[rng.choice(3, p=split_weights)]
        pool = facts_by_split[s]
        n_turns = int(rng.integers(2, params.max_chat_turns + 1))
        chosen = [pool[i] for i in rng.choice(len(pool), size=n_turns, replace=False)]
        turns = []
        for f in chosen:
            q = pick(f.questions)
            turns.append(_turn("user", q, b.utterance("speech_user", q, s, f.group_id, [f.fact_id], f.source)))
            ua = b.utterance("speech_assistant", f.spoken_answer, s, f.group_id, [f.fact_id], f.source)
            turns.append(_turn("assistant", f.spoken_answer, ua))
        b.sample("chat", s, turns, [f.fact_id for f in chosen], "+".join(sorted({f.source for f in chosen})),
                 answer=chosen[-1].answer)
    for i in range(params.n_sound):
        sound_class = SOUND_CLASSES[i % len(SOUND_CLASSES)]
        sound_seed = int(rng.integers(2**31))
        group = f"sound:{sound_class}:{sound_seed}"
        s = assign_split(group, seed, params.split_fractions)
        _, caption = generate_sound(sound_class, sound_seed)  # the caption describes the drawn parameters
        u = b.utterance("sound", caption, s, group, [group], "procedural", sound_class=sound_class,
                        sound_seed=sound_seed)
        b.sample("sound_cls", s, [_turn("user", "", u), _turn("assistant", sound_class)], [group], "procedural",
                 answer=sound_class)
        b.sample("sound_caption", s, [_turn("user", "", u), _turn("assistant", caption)], [group], "procedural",
                 answer=caption)
    fact_rows = pl.DataFrame(
        [dict(fact_id=f.fact_id, group_id=f.group_id, relation=f.relation, subject=f.subject, answer=f.answer,
              split=split_of[f.fact_id], source=f.source) for f in facts], schema=FACT_SCHEMA)
    utts, samples = b.frames()
    return fact_rows, utts, samples


def build_local(params: FetchParams, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A local dataset: every recording gives one ASR and one TTS sample; splits by transcript (or given)."""
    records = (local_sources.read_librispeech(params.local_path) if params.source == "librispeech"
               else local_sources.read_jsonl(params.local_path))
    b = _CorpusBuilder()
    for rec in records:
        group = io.stable_id("text", rec.text.lower())
        s = rec.split or assign_split(group, seed, params.split_fractions)
        u = b.utterance("recorded", rec.text, s, group, [rec.record_id], params.source, audio_path=rec.audio_path)
        b.sample("asr", s, [_turn("user", rec.text, u), _turn("assistant", rec.text)], [rec.record_id],
                 params.source, answer=rec.text)
        b.sample("tts", s, [_turn("user", rec.text), _turn("assistant", rec.text, u)], [rec.record_id],
                 params.source, answer=rec.text)
    empty_facts = pl.DataFrame(schema=FACT_SCHEMA)
    utts, samples = b.frames()
    return empty_facts, utts, samples


@dataclass(frozen=True)
class FetchResult:
    facts: int
    utterances: int
    samples: dict[str, int]
    audio_root: str


def run_fetch(params: FetchParams, seed: int, out_dir: str | Path) -> FetchResult:
    """Build the corpus and write `facts.parquet`, `utterances.parquet`, `samples.parquet` and `source.json`."""
    out = Path(out_dir)
    facts, utts, samples = (build_synthetic if params.source == "synthetic" else build_local)(params, seed)
    audio_root = "" if params.source == "synthetic" else str(local_sources.audio_root_of(params.local_path))
    io.write_parquet(facts, out / "facts.parquet")
    io.write_parquet(utts, out / "utterances.parquet")
    io.write_parquet(samples, out / "samples.parquet")
    # audio_root is where recorded `audio_path`s resolve; the synthesize stage reads it from here.
    io.write_json({"source": params.source, "audio_root": audio_root}, out / "source.json")
    counts = dict(sorted(samples.group_by("task").len().iter_rows()))
    return FetchResult(facts=facts.height, utterances=utts.height, samples=counts, audio_root=audio_root)
