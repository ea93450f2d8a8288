"""validate: each kind of hostile row is quarantined under its named rule, and no good row is lost.

Every test builds a tiny, fully consistent corpus (facts, utterances, samples, audio shards) in `tmp_path`,
spoils it in one way, runs the stage and checks (a) the spoiled rows are quarantined with the expected rule,
(b) exactly the good rows come out, in every manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from stages.audio_io import SAMPLE_RATE, encode_flac
from stages.config import ParamsError, from_mapping
from stages.fetch import SAMPLE_SCHEMA, UTTERANCE_SCHEMA
from stages.synthesize import AUDIO_MANIFEST_SCHEMA
from stages.validate import ValidateParams, ValidationError, run_validate
from stages.validate.contracts import CONTRACTS_DIR, load_contract
from stages.validate.stage import FACT_SCHEMA, ID_COLUMNS, UTTERANCE_QUARANTINED

LENIENT = ValidateParams(max_quarantine_fraction=1.0)  # rule tests look at the quarantine, not the verdict
MANIFESTS = tuple(ID_COLUMNS)


def _tone(seconds: float = 0.5, freq: float = 220.0, amp: float = 0.3, sr: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _wav(pcm: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


@dataclass
class Corpus:
    """Rows of the four manifests plus each clip's bytes; `write` lays them out as fetch and synthesize do."""

    facts: list[dict] = field(default_factory=list)
    utts: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    audio: list[dict] = field(default_factory=list)
    clips: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # utt_id -> (shard, bytes)
    invalid_utf8: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (utterance row, column) -> raw bytes

    def fact(self, fact_id: str, split: str, group: str | None = None) -> str:
        self.facts.append(dict(fact_id=fact_id, group_id=group or f"g-{fact_id}", relation="capital",
                               subject=f"subject {fact_id}", answer=f"answer {fact_id}", split=split, source="geo"))
        return fact_id

    def utterance(self, utt_id: str, text: str, split: str, parents: list[str], kind: str = "speech_user",
                  group: str | None = None, clip: bytes | None = None, shard: str | None = None,
                  audio_path: str | None = None, **audio_overrides) -> str:
        """An utterance and (unless `clip` is b"" ) its audio row and clip: a 0.5 s tone by default."""
        group = group or f"g-{parents[0]}"
        self.utts.append(dict(utt_id=utt_id, kind=kind, text=text, sound_class=None, sound_seed=None,
                              audio_path=audio_path, split=split, group_id=group, parent_ids=parents, source="geo",
                              sha256=hashlib.sha256(text.encode()).hexdigest()))
        if clip == b"":
            return utt_id
        data = clip if clip is not None else encode_flac(_tone(freq=200.0 + 10 * len(self.audio)))
        shard = shard or f"shards/shard-{len(self.audio) % 2:05d}.parquet"
        try:  # the manifest tells the truth about the header, whatever the bytes hold after it
            info = sf.info(io.BytesIO(data))
            n, sr = info.frames, info.samplerate
        except (sf.SoundFileError, RuntimeError):
            n, sr = 8000, SAMPLE_RATE
        row = dict(utt_id=utt_id, kind=kind, voice="flite:slt", text=text, split=split, group_id=group,
                   parent_ids=parents, duration_s=n / sr, sample_rate=sr, channels=1, n_samples=n, shard=shard,
                   sha256=hashlib.sha256(data).hexdigest(), source="geo")
        row.update(audio_overrides)
        self.audio.append(row)
        self.clips[utt_id] = (shard, data)
        return utt_id

    def sample(self, sample_id: str, task: str, split: str, turns: list[tuple[str, str, str | None]],
               parents: list[str]) -> str:
        self.samples.append(dict(sample_id=sample_id, task=task, split=split, answer="a", parent_ids=parents,
                                 turns=[dict(role=r, text=t, utt_id=u) for r, t, u in turns], source="geo",
                                 sha256="0" * 64))
        return sample_id

    def chain(self, name: str, split: str, fact: str | None = None, text: str | None = None, **utt_kwargs) -> None:
        """A fact (unless given), its spoken question `u-<name>` and an ASR sample `s-<name>` on it."""
        fact = fact or self.fact(f"f-{name}", split)
        text = text if text is not None else f"Question number {name} about {fact}?"
        u = self.utterance(f"u-{name}", text, split, [fact], **utt_kwargs)
        self.sample(f"s-{name}", "asr", split, [("user", text, u), ("assistant", text, None)], [fact])

    def write(self, root: Path) -> tuple[Path, Path]:
        raw, audio = root / "raw", root / "audio"
        raw.mkdir(parents=True)
        (audio / "shards").mkdir(parents=True)
        (raw / "source.json").write_text(json.dumps({"source": "synthetic", "audio_root": str(root / "recordings")}))
        pl.DataFrame(self.facts, schema=FACT_SCHEMA).write_parquet(raw / "facts.parquet")
        utts = pl.DataFrame(self.utts, schema=UTTERANCE_SCHEMA).to_arrow()
        for (row, column), raw_bytes in self.invalid_utf8.items():
            utts = utts.set_column(utts.schema.get_field_index(column), column, _string_with_bytes(
                utts.column(column), row, raw_bytes))
        pq.write_table(utts, raw / "utterances.parquet")
        pl.DataFrame(self.samples, schema=SAMPLE_SCHEMA).write_parquet(raw / "samples.parquet")
        pl.DataFrame(self.audio, schema=AUDIO_MANIFEST_SCHEMA).write_parquet(audio / "manifest.parquet")
        by_shard: dict[str, list[tuple[str, bytes]]] = {}
        for utt_id, (shard, data) in self.clips.items():
            by_shard.setdefault(shard, []).append((utt_id, data))
        for shard, clips in by_shard.items():
            path = audio / shard
            if path.resolve().is_relative_to(audio.resolve()):  # hostile paths point outside: nothing to write
                pl.DataFrame({"utt_id": [c[0] for c in clips], "audio": [c[1] for c in clips]},
                             schema={"utt_id": pl.String, "audio": pl.Binary}).write_parquet(path)
        return raw, audio


def _string_with_bytes(column: pa.ChunkedArray, row: int, raw: bytes) -> pa.Array:
    """A string column whose `row` holds `raw` unvalidated: what a non-validating parquet writer can store."""
    values = column.cast(pa.binary()).to_pylist()
    values[row] = raw
    binary = pa.array(values, pa.binary())
    validity, offsets, data = binary.buffers()
    return pa.StringArray.from_buffers(len(binary), offsets, data, validity, binary.null_count)


def good_corpus() -> Corpus:
    """Three facts (train, train, test), each with a question, an answer clip, an ASR and a QA sample; a sound."""
    c = Corpus()
    for name, split in (("a", "train"), ("b", "train"), ("c", "test")):
        c.chain(name, split)
        fact = f"f-{name}"
        ans = c.utterance(f"u-{name}-ans", f"The answer about {name} is {name}.", split, [fact],
                          kind="speech_assistant")
        c.sample(f"s-{name}-qa", "qa", split, [("user", "", f"u-{name}"), ("assistant", "answer", ans)], [fact])
    c.utterance("u-bell", "a bell rings twice", "val", ["sound:bells:1"], kind="sound", group="sound:bells:1")
    c.sample("s-bell", "sound_cls", "val", [("user", "", "u-bell"), ("assistant", "bells", None)], ["sound:bells:1"])
    return c


GOOD = good_corpus()
GOOD_IDS = {m: {r[ID_COLUMNS[m]] for r in rows} for m, rows in
            (("facts", GOOD.facts), ("utterances", GOOD.utts), ("samples", GOOD.samples), ("audio", GOOD.audio))}


def _run(tmp_path: Path, corpus: Corpus, params: ValidateParams = LENIENT):
    raw, audio = corpus.write(tmp_path)
    out = tmp_path / "validated"
    result = run_validate(params, raw, audio, out, tmp_path / "reports" / "validation.json")
    quarantine = pl.read_parquet(out / "quarantine.parquet")
    passed = {m: set(pl.read_parquet(out / f"{m}.parquet")[ID_COLUMNS[m]]) for m in MANIFESTS}
    return result, quarantine, passed


def _caught(quarantine: pl.DataFrame, manifest: str, row_id: str) -> set[str]:
    return set(quarantine.filter((pl.col("manifest") == manifest) & (pl.col("row_id") == row_id))["rule"])


def test_good_corpus_passes_whole(tmp_path):
    result, quarantine, passed = _run(tmp_path, good_corpus(), ValidateParams(max_quarantine_fraction=0.0))
    assert quarantine.height == 0, quarantine.to_dicts()
    assert passed == GOOD_IDS
    assert result.passed and all(r.quarantined == 0 for r in result.manifests.values())


# --- hostile rows ---------------------------------------------------------------------------------------------
# Each case spoils the corpus under its own name `n` (ids u-n, s-n, f-n) and lists {(manifest, row id): rule}.
# All cases go into one corpus and one run (GX costs ~1.5 s per run, whatever the size); the names keep them
# apart, and each case is still checked on its own.
def _flac_at(sr: int) -> bytes:
    return encode_flac(_tone(sr=sr), sr)


def _truncated() -> bytes:
    data = encode_flac(_tone(seconds=1.0))
    return data[: len(data) // 2]


def _clipped() -> bytes:
    return encode_flac(np.sign(_tone()) * 1.0)


def _nan() -> bytes:
    pcm = _tone()
    pcm[100:110] = np.nan
    return _wav(pcm)


Spoil = Callable[[Corpus, str], None]


def _add(**kwargs) -> Spoil:
    return lambda c, n: c.chain(n, "train", **kwargs)


def _invalid_utf8(c: Corpus, n: str) -> None:
    c.chain(n, "train", text=f"caf\ufffd {n}")  # the audio manifest carries what a lossy reader saw
    c.invalid_utf8[(len(c.utts) - 1, "text")] = f"caf\xe9 {n}".encode("latin-1")  # Latin-1 in a UTF-8 column


def _duplicate_id(c: Corpus, n: str) -> None:
    c.chain(n, "train")
    c.utterance(f"u-{n}", "Another text under the same id.", "train", [f"f-{n}"], clip=b"")


def _two_splits_text(c: Corpus, n: str) -> None:
    c.chain(f"{n}-1", "train", text="The same sentence.")
    c.chain(f"{n}-2", "test", text="the  same sentence.")


def _two_splits_group(c: Corpus, n: str) -> None:
    c.chain(f"{n}-1", "train", fact=c.fact(f"f-{n}-1", "train", group=n), group=n)
    c.chain(f"{n}-2", "test", fact=c.fact(f"f-{n}-2", "test", group=n), group=n)


def _leaked_fact(c: Corpus, n: str) -> None:
    c.chain(n, "train", fact="f-c")  # f-c is a test fact


def _unknown_turn(c: Corpus, n: str) -> None:
    c.sample(f"s-{n}", "asr", "train", [("user", "hi", "u-nowhere"), ("assistant", "hi", None)], ["f-a"])


def _bad_role(c: Corpus, n: str) -> None:
    c.sample(f"s-{n}", "asr", "train", [("bot", "hi", None), ("assistant", "   ", None)], ["f-a"])


def _clip_not_in_shard(c: Corpus, n: str) -> None:
    c.chain(n, "train")
    c.clips.pop(f"u-{n}")


def _orphan_audio(c: Corpus, n: str) -> None:
    c.chain(n, "train")
    c.utts.pop()
    c.samples.pop()


HOSTILE: dict[str, tuple[Spoil, dict[tuple[str, str], str]]] = {
    "truncated": (_add(clip=_truncated()), {("audio", "u-{n}"): "audio.decodes"}),
    "corrupt": (_add(clip=b"RIFF\x00\x01garbage" * 20), {("audio", "u-{n}"): "audio.decodes"}),
    "one_byte": (_add(clip=b"\x00"), {("audio", "u-{n}"): "audio.decodes"}),
    "stereo": (_add(clip=_wav(np.stack([_tone(), _tone()], 1), subtype="PCM_16")), {("audio", "u-{n}"): "audio.mono"}),
    "8khz": (_add(clip=_flac_at(8000)), {("audio", "u-{n}"): "audio.sample_rate_expected"}),
    "silence": (_add(clip=encode_flac(np.zeros(8000, np.float32))), {("audio", "u-{n}"): "audio.not_silent"}),
    "nan": (_add(clip=_nan()), {("audio", "u-{n}"): "audio.finite"}),
    "clipped": (_add(clip=_clipped()), {("audio", "u-{n}"): "audio.not_clipped"}),
    "too_short": (_add(clip=encode_flac(_tone(seconds=0.05))), {("audio", "u-{n}"): "audio.duration_in_range"}),
    "sha_mismatch": (_add(sha256="f" * 64), {("audio", "u-{n}"): "audio.sha256_matches"}),
    "n_samples_lie": (_add(n_samples=9000, duration_s=9000 / SAMPLE_RATE),
                      {("audio", "u-{n}"): "audio.n_samples_match"}),
    "duration_lie": (_add(duration_s=2.0), {("audio", "u-{n}"): "audio.duration_consistent"}),
    "clip_missing": (_clip_not_in_shard, {("audio", "u-{n}"): "audio.one_clip_in_shard"}),
    "no_audio_row": (_add(clip=b""), {("utterances", "u-{n}"): "utterances.audio_present"}),
    "shard_dotdot": (_add(shard="../outside.parquet"), {("audio", "u-{n}"): "audio.shard_path_inside"}),
    "shard_absolute": (_add(shard="/tmp/shard.parquet"), {("audio", "u-{n}"): "audio.shard_path_inside"}),
    "orphan_audio": (_orphan_audio, {("audio", "u-{n}"): "audio.matches_utterance"}),
    "empty_text": (_add(text="   "), {("utterances", "u-{n}"): "utterances.text_non_empty"}),
    "too_long_text": (_add(text="word " * 300), {("utterances", "u-{n}"): "utterances.text_max_chars"}),
    "invalid_utf8": (_invalid_utf8, {("utterances", "u-{n}"): "utterances.text_valid_utf8"}),
    "replacement_char": (_add(text="na\ufffdve"), {("utterances", "u-{n}"): "utterances.text_valid_utf8"}),
    "control_char": (_add(text="null\x00byte"), {("utterances", "u-{n}"): "utterances.text_valid_utf8",
                                                  ("samples", "s-{n}"): "samples.text_valid_utf8"}),  # in turns
    "duplicate_id": (_duplicate_id, {("utterances", "u-{n}"): "utterances.utt_id_unique"}),
    "audio_path_dotdot": (_add(kind="recorded", audio_path="../../etc/passwd"),
                          {("utterances", "u-{n}"): "utterances.audio_path_inside"}),
    "audio_path_absolute": (_add(kind="recorded", audio_path="/etc/passwd"),
                            {("utterances", "u-{n}"): "utterances.audio_path_inside"}),
    "unknown_kind": (_add(kind="whisper"), {("utterances", "u-{n}"): "utterances.kind_known"}),
    "leaked_test_fact": (_leaked_fact, {("utterances", "u-{n}"): "utterances.no_leaked_fact",
                                        ("samples", "s-{n}"): "samples.no_leaked_fact"}),
    "text_in_two_splits": (_two_splits_text, {("utterances", "u-{n}-1"): "utterances.text_in_one_split",
                                              ("utterances", "u-{n}-2"): "utterances.text_in_one_split"}),
    "group_in_two_splits": (_two_splits_group, {("utterances", "u-{n}-1"): "utterances.group_in_one_split",
                                                ("facts", "f-{n}-1"): "facts.group_in_one_split",
                                                ("facts", "f-{n}-2"): "facts.group_in_one_split"}),
    "unknown_turn_utterance": (_unknown_turn, {("samples", "s-{n}"): "samples.utterances_known"}),
    "malformed_turns": (_bad_role, {("samples", "s-{n}"): "samples.turns_well_formed"}),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[pl.DataFrame, dict[str, set[str]]]:
    corpus = good_corpus()
    for case, (spoil, _) in HOSTILE.items():
        spoil(corpus, case)
    _, quarantine, passed = _run(tmp_path_factory.mktemp("hostile"), corpus)
    return quarantine, passed


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_row_is_caught_with_its_rule(hostile, case):
    quarantine, passed = hostile
    for (manifest, row_id), rule in HOSTILE[case][1].items():
        row_id = row_id.format(n=case)
        assert rule in _caught(quarantine, manifest, row_id), _caught(quarantine, manifest, row_id)
        assert row_id not in passed[manifest]


def test_hostile_rows_take_no_good_row_down(hostile):
    quarantine, passed = hostile
    for m in MANIFESTS:  # every good row kept; every new row is bad itself or hangs off a bad row
        assert GOOD_IDS[m] <= passed[m], (m, GOOD_IDS[m] - passed[m])
        if m != "facts":  # a spoiled utterance's own fact is still a fine fact
            assert passed[m] == GOOD_IDS[m], (m, passed[m] - GOOD_IDS[m])
    assert "facts.group_in_one_split" not in _caught(quarantine, "facts", "f-c")  # its leaked row is named instead
    assert _caught(quarantine, "utterances", "u-c") == set()


def test_bad_audio_cascades_to_its_utterance_and_samples(hostile):
    q, _ = hostile
    assert _caught(q, "utterances", "u-truncated") == {"utterances.audio_present"}
    assert _caught(q, "samples", "s-truncated") == {"samples.parent_quarantined"}
    detail = dict(zip(q["row_id"], q["detail"]))
    assert "audio quarantined (audio.decodes)" in detail["u-truncated"]
    assert "u-truncated quarantined (utterances.audio_present)" in detail["s-truncated"]


def test_bad_utterance_takes_its_good_audio_along(hostile):
    q, _ = hostile
    assert _caught(q, "audio", "u-empty_text") == {UTTERANCE_QUARANTINED}


def test_details_are_readable(hostile):
    q, _ = hostile
    detail = {(row_id, rule): d for row_id, rule, d in q.select("row_id", "rule", "detail").iter_rows()}
    assert "decoded_sample_rate=8000" in detail["u-8khz", "audio.sample_rate_expected"]
    assert "f-c is in test" in detail["u-leaked_test_fact", "utterances.no_leaked_fact"]
    assert "invalid UTF-8 at byte 3" in detail["u-invalid_utf8", "utterances.text_valid_utf8"]
    assert "escapes the data root" in detail["u-audio_path_dotdot", "utterances.audio_path_inside"]
    assert set(q.columns) == {"manifest", "row_index", "row_id", "rule", "detail"}
    assert q.unique(["manifest", "row_index", "rule"]).height == q.height  # one row per (row, rule)


def test_threshold_fails_the_stage_after_writing_report_and_quarantine(tmp_path):
    corpus = good_corpus()
    corpus.chain("x", "train", clip=_truncated())
    corpus.chain("y", "train", clip=encode_flac(np.zeros(8000, np.float32)))
    raw, audio = corpus.write(tmp_path)
    report_path = tmp_path / "reports" / "validation.json"
    with pytest.raises(ValidationError) as err:
        run_validate(ValidateParams(max_quarantine_fraction=0.1), raw, audio, tmp_path / "out", report_path)
    message = str(err.value)
    assert "audio (2/9" in message and "audio.decodes x1" in message and "audio.not_silent x1" in message
    assert str(report_path) in message
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and report["max_quarantine_fraction"] == 0.1
    assert report["manifests"]["audio"] == {
        "checked": 9, "passed": 7, "quarantined": 2, "quarantine_fraction": round(2 / 9, 6),
        "rules": {**{r: 0 for r in load_contract("audio").rules}, UTTERANCE_QUARANTINED: 0,
                  "audio.decodes": 1, "audio.not_silent": 1}}
    assert report["manifests"]["utterances"]["rules"]["utterances.audio_present"] == 2
    assert report["manifests"]["facts"]["quarantined"] == 0
    assert pl.read_parquet(tmp_path / "out" / "quarantine.parquet").height >= 6


def test_outputs_are_deterministic_serial_or_pooled_and_facts_may_be_empty(tmp_path):
    corpus = good_corpus()
    corpus.facts.clear()  # local data has no facts
    corpus.chain("x", "train", fact="f-gone", clip=_truncated())
    runs = []
    for name in ("serial", "pooled"):
        raw, audio = corpus.write(tmp_path / name)
        out = tmp_path / name / "out"
        with ThreadPoolExecutor(2) as pool:
            run_validate(LENIENT, raw, audio, out, out / "report.json", map_shards=map if name == "serial" else pool.map)
        runs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert runs[0] == runs[1]
    assert pl.read_parquet(tmp_path / "serial" / "out" / "facts.parquet").height == 0


def test_schema_mismatch_is_a_clear_error(tmp_path):
    corpus = good_corpus()
    raw, audio = corpus.write(tmp_path)
    pl.read_parquet(raw / "samples.parquet").drop("turns").write_parquet(raw / "samples.parquet")
    with pytest.raises(ValidationError, match=r"samples.parquet: schema mismatch; missing columns \['turns'\]"):
        run_validate(LENIENT, raw, audio, tmp_path / "out", tmp_path / "report.json")
    assert not (tmp_path / "out").exists()


def test_contracts_name_their_rules_and_use_only_known_parameters():
    params = set(ValidateParams().suite_parameters())
    for m in MANIFESTS:
        contract = load_contract(m)
        assert len(set(contract.rules)) == len(contract.rules) and all(r.startswith(f"{m}.") for r in contract.rules)
        refs = [v["$PARAMETER"] for e in contract.suite["expectations"] for v in e["kwargs"].values()
                if isinstance(v, dict)]
        assert set(refs) <= params
    assert {p.stem for p in CONTRACTS_DIR.glob("*.json")} == set(MANIFESTS)


def test_params_reject_bad_values():
    with pytest.raises(ValueError, match="min_duration_s"):
        ValidateParams(min_duration_s=5.0, max_duration_s=1.0)
    with pytest.raises(ValueError, match="max_quarantine_fraction"):
        replace(LENIENT, max_quarantine_fraction=1.5)
    with pytest.raises(ParamsError, match="unknown key"):
        from_mapping(ValidateParams, {"sample_rte": 16000}, "params.yaml:validate")
