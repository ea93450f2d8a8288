"""A hand-made pipeline in miniature for lineage questions: manifests and a shard index, no audio or tokens.

Facts `f-train` (train) and `f-test` (test). Samples: a train QA pair about one, a test QA pair about two, and a
sound caption in each split with the *same* caption (legitimate: a caption describes a class, not a fact).
Documents: the train QA sample, a train interleaved document of train utterances, the two sound documents and the
test QA sample, in two train shards and one test shard. `plant(...)` adds exactly one kind of leak.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from stages import io
from stages.fetch import FACT_SCHEMA, SAMPLE_SCHEMA, UTTERANCE_SCHEMA
from stages.pack import INDEX_SCHEMA
from stages.synthesize import AUDIO_MANIFEST_SCHEMA

PLANTS = ("fact", "utterance", "sample", "text")
RULES = {"fact": "held-out fact in lineage", "utterance": "held-out utterance", "sample": "held-out sample",
         "text": "held-out text"}

FACTS = [("f-train", "g1", "train", "One"), ("f-test", "g2", "test", "Two")]
UTTS = [  # utt_id, kind, text, split, parents, voice, seconds
    ("u-q1", "speech_user", "What is one?", "train", ["f-train"], "flite:awb", 1.5),
    ("u-a1", "speech_assistant", "It is one.", "train", ["f-train"], "flite:slt", 1.0),
    ("u-q2", "speech_user", "What is two?", "test", ["f-test"], "espeak-ng:en-us", 1.25),
    ("u-a2", "speech_assistant", "It is two.", "test", ["f-test"], "flite:slt", 1.0),
    ("u-s1", "sound", "a bell rings", "train", ["sound:bell:1"], "procedural:bell", 2.0),
    ("u-s2", "sound", "a bell rings", "test", ["sound:bell:2"], "procedural:bell", 2.0),
]


def _turns(*turns: tuple[str, str, str | None]) -> list[dict]:
    return [{"role": r, "text": t, "utt_id": u} for r, t, u in turns]


SAMPLES = [  # sample_id, task, split, answer, parents, turns
    ("smp-qa1", "qa", "train", "one", ["f-train"], _turns(("user", "What is one?", "u-q1"),
                                                           ("assistant", "It is one.", "u-a1"))),
    ("smp-qa2", "qa", "test", "two", ["f-test"], _turns(("user", "What is two?", "u-q2"),
                                                         ("assistant", "It is two.", "u-a2"))),
    ("smp-sc1", "sound_caption", "train", "a bell rings", ["sound:bell:1"],
     _turns(("user", "", "u-s1"), ("assistant", "a bell rings", None))),
    ("smp-sc2", "sound_caption", "test", "a bell rings", ["sound:bell:2"],
     _turns(("user", "", "u-s2"), ("assistant", "a bell rings", None))),
]


def _doc(doc_id: str, split: str, task: str, sample_id: str, shard: str, row: int, offset: int,
         utt_ids: list[str], parent_ids: list[str]) -> dict:
    return dict(doc_id=doc_id, split=split, task=task, sample_id=sample_id, variant=0, shard=shard, row=row,
                offset=offset, length=100, doc_in_row=0, utt_ids=utt_ids, parent_ids=parent_ids, prompt_len=40,
                span_kinds=[], span_starts=[], span_lens=[], tail_start=-1, tail_len=0)


def documents() -> list[dict]:
    return [
        _doc("d-qa1", "train", "qa", "smp-qa1", "train/shard-00000.safetensors", 0, 0, ["u-q1", "u-a1"], ["f-train"]),
        _doc("d-il", "train", "interleaved", "", "train/shard-00000.safetensors", 0, 100, ["u-q1", "u-a1"],
             ["f-train"]),
        _doc("d-sc1", "train", "sound_caption", "smp-sc1", "train/shard-00001.safetensors", 0, 0, ["u-s1"],
             ["sound:bell:1"]),
        _doc("d-qa2", "test", "qa", "smp-qa2", "test/shard-00000.safetensors", 0, 0, ["u-q2", "u-a2"], ["f-test"]),
        _doc("d-sc2", "test", "sound_caption", "smp-sc2", "test/shard-00000.safetensors", 0, 100, ["u-s2"],
             ["sound:bell:2"]),
    ]


def plant(docs: list[dict], samples: list[tuple], kind: str) -> None:
    """Add one leak of `kind` to the training documents (in place)."""
    if kind == "fact":  # a train document whose lineage names the test fact
        docs[0]["parent_ids"] = docs[0]["parent_ids"] + ["f-test"]
    elif kind == "utterance":  # test speech packed into a train interleaved document (no fact id on it)
        docs[1]["utt_ids"] = docs[1]["utt_ids"] + ["u-a2"]
    elif kind == "sample":  # a test sample rendered into the train split, lineage ids stripped
        docs.append(_doc("d-copy", "train", "qa", "smp-qa2", "train/shard-00001.safetensors", 0, 100, [], []))
    elif kind == "text":  # a new train sample that repeats a test answer sentence under fresh ids
        samples.append(("smp-new", "qa", "train", "x", ["f-train"],
                        _turns(("user", "Say it.", None), ("assistant", "It is two.", None))))
        docs.append(_doc("d-new", "train", "qa", "smp-new", "train/shard-00001.safetensors", 0, 100, [],
                         ["f-train"]))
    else:
        raise ValueError(kind)


def write(root: Path, leak: str | None = None) -> tuple[Path, Path]:
    """(validated_dir, shards_dir) of the miniature, with one planted leak of kind `leak`."""
    docs, samples = documents(), list(SAMPLES)
    if leak is not None:
        plant(docs, samples, leak)
    validated, shards = root / "validated", root / "shards"
    io.write_parquet(pl.DataFrame([dict(fact_id=f, group_id=g, relation="number", subject=a.lower(), answer=a,
                                        split=s, source="test") for f, g, s, a in FACTS], schema=FACT_SCHEMA),
                     validated / "facts.parquet")
    io.write_parquet(pl.DataFrame([dict(utt_id=u, kind=k, text=t, sound_class=None, sound_seed=None, audio_path=None,
                                        split=s, group_id="g", parent_ids=p, source="test", sha256=u)
                                   for u, k, t, s, p, _, _ in UTTS], schema=UTTERANCE_SCHEMA),
                     validated / "utterances.parquet")
    io.write_parquet(pl.DataFrame([dict(utt_id=u, kind=k, voice=v, text=t, split=s, group_id="g", parent_ids=p,
                                        duration_s=d, sample_rate=16000, channels=1, n_samples=int(d * 16000),
                                        shard="shards/shard-00000.parquet", sha256=u, source="test")
                                   for u, k, t, s, p, v, d in UTTS], schema=AUDIO_MANIFEST_SCHEMA),
                     validated / "audio.parquet")
    io.write_parquet(pl.DataFrame([dict(sample_id=i, task=t, split=s, answer=a, parent_ids=p, turns=turns,
                                        source="test", sha256=i) for i, t, s, a, p, turns in samples],
                                  schema=SAMPLE_SCHEMA), validated / "samples.parquet")
    io.write_parquet(pl.DataFrame(docs, schema=INDEX_SCHEMA), shards / "index.parquet")
    return validated, shards
