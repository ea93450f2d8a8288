"""The evaluation's test items: held-out documents exactly as the pack stage rendered them, with their references.

A test item is one test-split document of the pack index (`data/shards/index.parquet`): its prompt is the
document's first `prompt_len` tokens read back from its shard (system instruction, user turn, the
`<|im_start|>assistant\\n` header), so evaluation prompts cannot drift from the training layout; its references
come from the validated samples manifest (the assistant turn's text, the short answer, the utterance ids of the
user's and the assistant's audio). Which items: per task the first `max_items` test documents in sample-id order
(ids are content hashes, so this is a fixed, effectively random subset that only grows when the cap is raised).

Multi-turn chat and interleaved documents are not evaluated: their first exchange is a spoken-QA item in all but
name, and interleaved documents have no single answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from safetensors import safe_open

from stages import io
from stages.audio_shards import read_clips

#: Tasks the evaluation knows how to score, in report order.
EVAL_TASKS: tuple[str, ...] = ("asr", "tts", "qa", "sound_cls", "sound_caption")
#: Tasks whose answer is spoken (the model's audio is decoded, judged and timed).
SPOKEN_TASKS: frozenset[str] = frozenset({"tts", "qa"})


@dataclass(frozen=True)
class EvalItem:
    """One held-out document to answer, and what a correct answer is."""

    task: str
    sample_id: str
    doc_id: str
    prompt_ids: tuple[int, ...]
    answer_tokens: int
    """Length of the reference assistant turn in tokens (text, markers and audio); bounds generation."""
    reference: str
    """The assistant turn's text: the transcript (asr), the sentence to speak (tts), the answer sentence (qa), the
    class name (sound_cls) or the caption (sound_caption)."""
    answer: str
    """The sample's short answer (qa: e.g. "Paris"; otherwise the same as `reference`)."""
    user_utt: str | None
    """Utterance id of the user's audio (asr, qa, sound tasks)."""
    assistant_utt: str | None
    """Utterance id of the reference answer's speech (tts, qa)."""


def _turn_utt(turns: list[dict], role: str) -> str | None:
    return next((t["utt_id"] for t in turns if t["role"] == role and t["utt_id"]), None)


def _assistant_text(turns: list[dict]) -> str:
    return next(t["text"] for t in turns if t["role"] == "assistant")


def _prompts(shards_dir: Path, docs: pl.DataFrame) -> dict[str, tuple[int, ...]]:
    """doc_id -> prompt ids, reading each shard once."""
    out: dict[str, tuple[int, ...]] = {}
    for (shard,), group in docs.group_by("shard", maintain_order=True):
        with safe_open(str(io.resolve_inside(shards_dir, str(shard))), framework="np") as handle:
            ids = handle.get_slice("input_ids")
            for doc_id, row, offset, prompt_len in group.select("doc_id", "row", "offset", "prompt_len").iter_rows():
                out[doc_id] = tuple(int(i) for i in ids[row:row + 1][0, offset:offset + prompt_len])
    return out


def load_items(shards_dir: str | Path, validated_dir: str | Path, tasks: Sequence[str], max_items: int,
               split: str = "test") -> dict[str, list[EvalItem]]:
    """Up to `max_items` items per task of `split` (see the module docstring), keyed by task in `tasks` order."""
    unknown = sorted(set(tasks) - set(EVAL_TASKS))
    if unknown:
        raise ValueError(f"cannot evaluate task(s) {unknown}; known: {list(EVAL_TASKS)}")
    shards = Path(shards_dir)
    index = pl.read_parquet(shards / "index.parquet").filter((pl.col("split") == split)
                                                             & pl.col("task").is_in(list(tasks)))
    samples = pl.read_parquet(Path(validated_dir) / "samples.parquet", columns=["sample_id", "answer", "turns"])
    docs = (index.join(samples, on="sample_id", how="inner").sort("task", "sample_id", "doc_id")
            .group_by("task", maintain_order=True).head(max_items))
    prompts = _prompts(shards, docs)
    items: dict[str, list[EvalItem]] = {task: [] for task in tasks}
    for d in docs.iter_rows(named=True):
        items[d["task"]].append(EvalItem(
            task=d["task"], sample_id=d["sample_id"], doc_id=d["doc_id"], prompt_ids=prompts[d["doc_id"]],
            answer_tokens=d["length"] - d["prompt_len"], reference=_assistant_text(d["turns"]),
            answer=d["answer"] or _assistant_text(d["turns"]), user_utt=_turn_utt(d["turns"], "user"),
            assistant_utt=_turn_utt(d["turns"], "assistant")))
    return items


def train_answers(validated_dir: str | Path, task: str) -> list[str]:
    """The short answers of the task's training samples (what the majority/constant baselines are drawn from)."""
    samples = pl.read_parquet(Path(validated_dir) / "samples.parquet", columns=["task", "split", "answer"])
    return samples.filter((pl.col("split") == "train") & (pl.col("task") == task))["answer"].to_list()


def read_utterances(audio_dir: str | Path, validated_dir: str | Path, utt_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """16 kHz PCM of the given utterances from the synthesize stage's shards (located via the validated audio
    manifest), one shard at a time."""
    manifest = pl.read_parquet(Path(validated_dir) / "audio.parquet", columns=["utt_id", "shard"])
    wanted = manifest.filter(pl.col("utt_id").is_in(list(utt_ids))).sort("shard", "utt_id")
    missing = sorted(set(utt_ids) - set(wanted["utt_id"]))
    if missing:
        raise KeyError(f"no validated audio for utterance(s) {missing[:5]}")
    out: dict[str, np.ndarray] = {}
    for (shard,), group in wanted.group_by("shard", maintain_order=True):
        out.update(read_clips(audio_dir, str(shard), group["utt_id"].to_list()))
    return out
