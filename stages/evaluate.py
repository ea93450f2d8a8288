"""evaluate: the trained checkpoint answers held-out test documents; every score sits beside a trivial baseline.

    dvc repro evaluate
    python -m flows.evaluate --params params.yaml --checkpoint models/ttt --tokenizers models/tokenizers \\
        --validated data/validated --audio data/audio --shards data/shards --out reports/eval \\
        --metrics reports/metrics.json

Items: up to `max_items` test documents per task (`stages.eval_data`), prompts exactly as packed. Decoding: the
checkpoint's own decoder, greedy text, audio spans streamed through the codec (`stages.eval_generate`). Text is
compared after the one normaliser of `stages.eval_metrics`; speech is transcribed by the independent ASR judge
(`stages.asr_judge`, whisper tiny.en, offline).

- asr: WER and CER of the transcript. Baselines: the empty transcript; the most common training transcript.
- tts: the judge's WER on the model's speech against the text, and the WER of the model's written text. Also
  `judge_wer_text_forced`: the same with the sentence forced as the answer's text side (`text_script`), so only
  the audio is the model's; it tells "cannot copy the text" from "cannot speak it" (not for the NAR baseline,
  which has no AR side to force). Baselines: silence; random codes of the reference's length decoded by the
  codec. Ceilings: the judge's WER on the reference speech round-tripped through the codec (`ceiling_codec_wer`)
  and on the original speech. Beside each judge WER its `*word_recall`, the share of the sentence's words the
  judge heard (silence: 0): whisper's hallucinations on babble inflate the WER, never the recall. And
  `speech_length_ratio` (`_text_forced`): the model's speech time over the reference's; speech that runs on past
  its sentence is babble the judge turns into inserted words.
- qa: answer accuracy, the short answer occurring in the written text (`text_accuracy`) or in the judge's
  transcript of the spoken answer (`spoken_accuracy`); exact match. Baseline: the most common training answer.
- sound_cls: accuracy (normalised exact match of the class). Baselines: the majority training class; chance.
- sound_caption: mean token F1 against the reference caption. Baseline: the most common training caption.
- speed (spoken tasks): time to first audio (median), audio tokens/s (model time only), real-time factor (wall
  time over audio seconds).

Outputs: `metrics` (JSON, a DVC metric: `{task: {metric: number}}`), and in `out_dir`: `samples.jsonl` (one line per
item: prompt reference, the model's text, the judge's transcript, scores, timings, audio paths relative to
`out_dir`), `audio/<task>/<sample_id>.wav` (the model's speech), `audio/tts_forced/<sample_id>.wav` (its speech
with the text forced), `audio/tts_reference/<sample_id>.wav` (the codec round trip of the reference, the ceiling),
and `summary.json` (checkpoint objective, layout, items, timings).
"""

from __future__ import annotations

import dataclasses
import io as _io
import json
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from model.layout import assistant_text_script
from model.sampler import SamplerConfig
from stages import eval_metrics as m
from stages import io
from stages.audio_io import SAMPLE_RATE
from stages.eval_data import EVAL_TASKS, SPOKEN_TASKS, EvalItem, load_items, read_utterances, train_answers
from stages.eval_generate import SCRIPTABLE, Answer, Assets, answer, answer_budget, objective_of
from stages.pack import PackParams

#: Added to `base.seed` for the random-codes baseline, so it never shares a stream with another stage.
SEED_OFFSET = 9


@dataclass(frozen=True)
class EvaluateParams:
    """`evaluate` section of params.yaml."""

    tasks: tuple[str, ...] = EVAL_TASKS
    """Tasks to evaluate (any of asr, tts, qa, sound_cls, sound_caption)."""
    max_items: int = 24
    """Most test documents per task: bounds the stage's cost (tiny: a few minutes on 2 CPU cores)."""
    length_factor: float = 2.0
    """An answer may take this many times the reference answer's tokens (plus 8), then decoding stops."""
    max_audio_len: int = 200
    """Most codes in a tail span (8 s at 25 Hz)."""
    block_len: int = 0
    """Masks per tail-span block (`model.sampler.SamplerConfig.block_len`); 0: one chunk span (`pack.audio_chunk`),
    as `ttt chat` does. The model ends a span at a block's last position, so blocks of one chunk span end the speech
    near its natural length (32-mask blocks with 12-code chunks: 1.56x as long, and whisper hallucinates over it)."""
    steps_per_block: int = 8
    """Denoising steps per block."""
    strategy: Literal["low_confidence", "threshold"] = "low_confidence"
    """Diffusion commit rule (`SamplerConfig.strategy`)."""
    threshold: float = 0.9
    """Commit confidence of the threshold strategy."""
    cfg_scale: float = 0.0
    """Classifier-free guidance for audio (0 = off)."""
    decode_context: int = 8
    """Codes of earlier spans decoded with each span (as `ttt chat` streams them)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs; `auto` = cuda when available."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(EVAL_TASKS))
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {list(EVAL_TASKS)}; unknown: {unknown}")
        if self.max_items < 1 or self.length_factor <= 0 or self.decode_context < 0 or self.block_len < 0:
            raise ValueError("need max_items >= 1, length_factor > 0, decode_context >= 0 and block_len >= 0")
        self.sampler_config(26, 1, 0)  # the sampler's own checks, at load time

    def sampler_config(self, chunk_len: int, max_new_tokens: int, seed: int) -> SamplerConfig:
        """Greedy decoding with this section's audio knobs; `chunk_len` is the layout's `pack.audio_chunk`."""
        return SamplerConfig(max_new_tokens=max_new_tokens, chunk_len=chunk_len, block_len=self.block_len or chunk_len,
                             steps_per_block=self.steps_per_block, strategy=self.strategy, threshold=self.threshold,
                             cfg_scale=self.cfg_scale, max_audio_len=self.max_audio_len, seed=seed)


class Transcriber(Protocol):
    """The ASR judge's interface (`stages.asr_judge.AsrJudge`): 16 kHz float PCM clips in, transcripts out."""

    def transcribe_batch(self, clips: Sequence[np.ndarray]) -> list[str]: ...


@dataclass(frozen=True)
class Headline:
    """One row of the report's main table: a score, the trivial baselines it must beat, and its ceiling if any."""

    task: str
    metric: str
    baselines: tuple[str, ...]
    lower_is_better: bool
    label: str
    ceiling: str = ""

    def best_baseline(self, values: dict[str, float]) -> float:
        """The strongest of the baselines present in `values` (a task's metrics)."""
        present = [values[b] for b in self.baselines if b in values]
        if not present:
            raise KeyError(f"{self.task}: none of the baselines {self.baselines} in the metrics")
        return min(present) if self.lower_is_better else max(present)

    def beats_baseline(self, values: dict[str, float]) -> bool:
        """The score is strictly better than every baseline ("learned", not just present)."""
        score, best = values[self.metric], self.best_baseline(values)
        return score < best if self.lower_is_better else score > best


HEADLINES: tuple[Headline, ...] = (
    Headline("asr", "wer", ("baseline_empty_wer", "baseline_constant_wer", "baseline_best_constant_wer"), True,
             "ASR word error rate"),
    Headline("asr", "cer", ("baseline_empty_cer", "baseline_constant_cer", "baseline_best_constant_cer"), True,
             "ASR character error rate"),
    Headline("tts", "judge_wer", ("baseline_silence_wer", "baseline_random_codes_wer"), True,
             "TTS intelligibility (judge WER)", ceiling="ceiling_codec_wer"),
    Headline("tts", "judge_wer_text_forced", ("baseline_silence_wer", "baseline_random_codes_wer"), True,
             "TTS intelligibility, text forced (judge WER)", ceiling="ceiling_codec_wer"),
    Headline("qa", "text_accuracy", ("baseline_constant_accuracy",), False, "spoken QA: written answer accuracy"),
    Headline("qa", "spoken_accuracy", ("baseline_constant_accuracy",), False, "spoken QA: spoken answer accuracy"),
    Headline("sound_cls", "accuracy", ("baseline_majority_accuracy", "chance_accuracy"), False,
             "sound-event classification accuracy"),
    Headline("sound_caption", "token_f1", ("baseline_constant_token_f1", "baseline_best_constant_token_f1"), False,
             "sound caption token F1"),
)


@dataclass
class _Run:
    """What one evaluation accumulates: answers, judge transcripts and per-item records."""

    items: dict[str, list[EvalItem]]
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    forced_pcm: list[np.ndarray] = field(default_factory=list)
    """Speech of the TTS answers with the sentence forced as their text (empty for the NAR baseline)."""
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# --- scoring -----------------------------------------------------------------------------------------------------
def score_asr(items: Sequence[EvalItem], hyps: Sequence[str], train: Sequence[str]) -> dict[str, float]:
    refs = [i.reference for i in items]
    constant = [m.most_common(train)] * len(refs)
    best_wer, best_cer = ([m.best_constant(train, error)] * len(refs) for error in (m.wer, m.cer))
    return {"wer": m.wer(refs, hyps), "cer": m.cer(refs, hyps), "baseline_empty_wer": m.wer(refs, [""] * len(refs)),
            "baseline_empty_cer": m.cer(refs, [""] * len(refs)), "baseline_constant_wer": m.wer(refs, constant),
            "baseline_constant_cer": m.cer(refs, constant), "baseline_best_constant_wer": m.wer(refs, best_wer),
            "baseline_best_constant_cer": m.cer(refs, best_cer)}


@dataclass(frozen=True)
class TtsDurations:
    """Seconds of speech per TTS item: the model's (free and text-forced) and the codec round trip of the reference."""

    speech: Sequence[float]
    forced: Sequence[float]
    reference: Sequence[float]

    def ratios(self) -> dict[str, float]:
        """`speech_length_ratio` (and `_text_forced` when forced speech exists): model time over reference time."""
        out = {"speech_length_ratio": m.length_ratio(self.speech, self.reference)}
        if self.forced:
            out["speech_length_ratio_text_forced"] = m.length_ratio(self.forced, self.reference)
        return out


def score_tts(items: Sequence[EvalItem], texts: Sequence[str], judged: Sequence[str], ceiling: Sequence[str],
              source: Sequence[str], random_codes: Sequence[str], judged_forced: Sequence[str] = (),
              durations: TtsDurations | None = None) -> dict[str, float]:
    refs = [i.reference for i in items]
    forced = ({"judge_wer_text_forced": m.wer(refs, judged_forced),
               "judge_word_recall_text_forced": m.word_recall(refs, judged_forced)} if judged_forced else {})
    lengths = {} if durations is None else durations.ratios()
    return {**forced, **lengths, "judge_wer": m.wer(refs, judged), "judge_cer": m.cer(refs, judged),
            "judge_word_recall": m.word_recall(refs, judged), "text_wer": m.wer(refs, texts),
            "ceiling_codec_wer": m.wer(refs, ceiling), "ceiling_codec_word_recall": m.word_recall(refs, ceiling),
            "ceiling_source_wer": m.wer(refs, source),
            "baseline_silence_wer": m.wer(refs, [""] * len(refs)),
            "baseline_random_codes_wer": m.wer(refs, random_codes),
            "baseline_random_codes_word_recall": m.word_recall(refs, random_codes)}


def score_qa(items: Sequence[EvalItem], texts: Sequence[str], judged: Sequence[str],
             train: Sequence[str]) -> dict[str, float]:
    constant = m.most_common(train)
    return {"text_accuracy": m.accuracy([m.contains_answer(t, i.answer) for t, i in zip(texts, items)]),
            "text_exact_accuracy": m.accuracy([m.exact_match(t, i.reference) or m.exact_match(t, i.answer)
                                               for t, i in zip(texts, items)]),
            "spoken_accuracy": m.accuracy([m.contains_answer(j, i.answer) for j, i in zip(judged, items)]),
            "baseline_constant_accuracy": m.accuracy([m.contains_answer(constant, i.answer) for i in items])}


def score_sound_cls(items: Sequence[EvalItem], texts: Sequence[str], train: Sequence[str]) -> dict[str, float]:
    majority = m.most_common(train)
    return {"accuracy": m.accuracy([m.exact_match(t, i.answer) for t, i in zip(texts, items)]),
            "baseline_majority_accuracy": m.accuracy([m.exact_match(majority, i.answer) for i in items]),
            "chance_accuracy": 1.0 / len({m.normalize_text(label) for label in train})}


def score_caption(items: Sequence[EvalItem], texts: Sequence[str], train: Sequence[str]) -> dict[str, float]:
    refs = [i.reference for i in items]
    best = m.best_constant(train, lambda r, h: 1.0 - m.mean_token_f1(h, r))
    return {"token_f1": m.mean_token_f1(texts, refs),
            "baseline_constant_token_f1": m.mean_token_f1([m.most_common(train)] * len(refs), refs),
            "baseline_best_constant_token_f1": m.mean_token_f1([best] * len(refs), refs)}


def _seconds(pcm: np.ndarray | None) -> float:
    return 0.0 if pcm is None else pcm.size / SAMPLE_RATE


def score_speed(answers: Sequence[Answer]) -> dict[str, float]:
    """Latency and throughput over the answers that spoke (an answer without audio has no first audio)."""
    spoken = [a for a in answers if a.pcm is not None and a.pcm.size]
    out: dict[str, float] = {"answers": len(answers), "answers_with_audio": len(spoken)}
    if spoken:
        model_s = sum(a.total_s - a.decode_s for a in spoken)
        audio_s = sum(_seconds(a.pcm) for a in spoken)
        out.update(time_to_first_audio_s=statistics.median(a.first_audio_s for a in spoken),  # type: ignore[type-var]
                   audio_tokens_per_s=sum(a.codes.size for a in spoken) / model_s,
                   real_time_factor=sum(a.total_s for a in spoken) / audio_s, audio_seconds=audio_s)
    return out


def _round(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {task: {k: round(float(v), 4) for k, v in sorted(values.items())} for task, values in metrics.items()}


# --- running -----------------------------------------------------------------------------------------------------
def _wav_bytes(pcm: np.ndarray) -> bytes:
    import soundfile as sf

    buf = _io.BytesIO()
    sf.write(buf, np.clip(pcm, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _save_wav(pcm: np.ndarray, out_dir: Path, folder: str, name: str) -> str:
    relative = f"audio/{folder}/{name}.wav"
    io.write_bytes(_wav_bytes(pcm), out_dir / relative)
    return relative


def _generate(run: _Run, assets: Assets, params: EvaluateParams, layout: PackParams, seed: int, out_dir: Path) -> None:
    """Every item's answer (and the text-forced TTS answers); the spoken ones saved as WAV files."""
    max_positions = int(assets.model.config.max_position_embeddings)
    scriptable = objective_of(assets.model) in SCRIPTABLE
    for task, items in run.items.items():
        start = time.perf_counter()
        speak = task in SPOKEN_TASKS
        run.answers[task], run.records[task] = [], []
        for item in items:
            budget = answer_budget(item.answer_tokens, len(item.prompt_ids), params.length_factor,
                                   params.max_audio_len, max_positions)
            config = params.sampler_config(layout.audio_chunk, budget, seed)
            ans = answer(assets, item.prompt_ids, config, speak, params.decode_context)
            record: dict[str, Any] = {
                "task": task, "sample_id": item.sample_id, "doc_id": item.doc_id, "reference": item.reference,
                "answer": item.answer, "text": ans.text, "prompt_tokens": len(item.prompt_ids),
                "generated_tokens": ans.generated_tokens, "max_new_tokens": budget, "stop": ans.stop,
                "audio_tokens": int(ans.codes.size), "total_s": round(ans.total_s, 4)}
            if speak:
                assert ans.pcm is not None
                record.update(wav=_save_wav(ans.pcm, out_dir, task, item.sample_id),
                              audio_s=round(_seconds(ans.pcm), 3), decode_s=round(ans.decode_s, 4),
                              first_audio_s=None if ans.first_audio_s is None else round(ans.first_audio_s, 4))
            if task == "tts" and scriptable:
                script = assistant_text_script(assets.tokenizer.encode(item.reference, add_special_tokens=False),
                                               assets.spec, layout.text_chunk)
                forced = answer(assets, item.prompt_ids, config, True, params.decode_context, text_script=script)
                assert forced.pcm is not None
                run.forced_pcm.append(forced.pcm)
                record["forced_wav"] = _save_wav(forced.pcm, out_dir, "tts_forced", item.sample_id)
            run.answers[task].append(ans)
            run.records[task].append(record)
        run.seconds[task] = time.perf_counter() - start


def _tts_references(items: Sequence[EvalItem], assets: Assets, audio_dir: str | Path, validated_dir: str | Path,
                    seed: int, out_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(original, codec round trip, random codes of the same length) speech per TTS item; round trips saved."""
    refs = read_utterances(audio_dir, validated_dir, [i.assistant_utt for i in items if i.assistant_utt])
    rng = np.random.default_rng(np.random.SeedSequence([seed + SEED_OFFSET]))
    original, roundtrip, random = [], [], []
    for item in items:
        if item.assistant_utt is None:
            raise ValueError(f"tts sample {item.sample_id} has no reference speech")
        pcm = refs[item.assistant_utt]
        codes = np.asarray(assets.codec.encode(pcm))
        original.append(pcm)
        roundtrip.append(np.asarray(assets.codec.decode(codes)))
        random.append(np.asarray(assets.codec.decode(rng.integers(0, assets.spec.audio_size, codes.size))))
        _save_wav(roundtrip[-1], out_dir, "tts_reference", item.sample_id)
    return original, roundtrip, random


def _score(run: _Run, assets: Assets, judge: Transcriber, validated_dir: str | Path, audio_dir: str | Path,
           seed: int, out_dir: Path) -> dict[str, dict[str, float]]:
    metrics: dict[str, dict[str, float]] = {}
    for task, items in run.items.items():
        texts = [a.text for a in run.answers[task]]
        records = run.records[task]
        speech = [a.pcm for a in run.answers[task] if a.pcm is not None]
        judged = judge.transcribe_batch(speech) if task in SPOKEN_TASKS else []
        for record, transcript in zip(records, judged):
            record["judge"] = transcript
        if task == "asr":
            metrics[task] = score_asr(items, texts, train_answers(validated_dir, task))
            for record, item, text in zip(records, items, texts):
                record["wer"] = round(m.wer([item.reference], [text]), 4)
        elif task == "tts":
            original, roundtrip, random = _tts_references(items, assets, audio_dir, validated_dir, seed, out_dir)
            ceiling, source = judge.transcribe_batch(roundtrip), judge.transcribe_batch(original)
            forced = judge.transcribe_batch(run.forced_pcm)
            durations = TtsDurations(speech=[_seconds(a.pcm) for a in run.answers[task]],
                                     forced=[_seconds(pcm) for pcm in run.forced_pcm],
                                     reference=[_seconds(pcm) for pcm in roundtrip])
            metrics[task] = score_tts(items, texts, judged, ceiling, source, judge.transcribe_batch(random), forced,
                                      durations)
            for record, item, transcript, ref_transcript, ref_s in zip(records, items, judged, ceiling,
                                                                       durations.reference):
                record.update(wer=round(m.wer([item.reference], [transcript]), 4), ceiling_judge=ref_transcript,
                              ceiling_wav=f"audio/tts_reference/{item.sample_id}.wav", reference_s=round(ref_s, 3))
            for record, item, transcript in zip(records, items, forced):
                record.update(forced_judge=transcript, forced_wer=round(m.wer([item.reference], [transcript]), 4))
        elif task == "qa":
            metrics[task] = score_qa(items, texts, judged, train_answers(validated_dir, task))
            for record, item, text, transcript in zip(records, items, texts, judged):
                record.update(correct=m.contains_answer(text, item.answer),
                              spoken_correct=m.contains_answer(transcript, item.answer))
        elif task == "sound_cls":
            metrics[task] = score_sound_cls(items, texts, train_answers(validated_dir, task))
            for record, item, text in zip(records, items, texts):
                record["correct"] = m.exact_match(text, item.answer)
        else:
            metrics[task] = score_caption(items, texts, train_answers(validated_dir, task))
            for record, item, text in zip(records, items, texts):
                record["token_f1"] = round(m.token_f1(text, item.reference), 4)
        metrics[task]["items"] = len(items)
    spoken = [a for task in run.answers if task in SPOKEN_TASKS for a in run.answers[task]]
    if spoken:
        metrics["speed"] = score_speed(spoken)
    return metrics


def run_evaluate(params: EvaluateParams, layout: PackParams, seed: int, assets: Assets, judge: Transcriber,
                 shards_dir: str | Path, validated_dir: str | Path, audio_dir: str | Path, out_dir: str | Path,
                 metrics_path: str | Path) -> dict[str, dict[str, float]]:
    """Answer, judge and score the test items; write the metrics, per-item records and audio (module docstring)."""
    out = Path(out_dir)
    shutil.rmtree(out / "audio", ignore_errors=True)  # audio of items no longer evaluated must not linger
    run = _Run(load_items(shards_dir, validated_dir, params.tasks, params.max_items))
    empty = [task for task, items in run.items.items() if not items]
    if empty:
        raise ValueError(f"no test documents for task(s) {empty} in {shards_dir}/index.parquet; drop them from "
                         "evaluate.tasks or give the pack stage test samples of them")
    assets.model.eval()
    _generate(run, assets, params, layout, seed, out)
    metrics = _round(_score(run, assets, judge, validated_dir, audio_dir, seed, out))
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for task in run.records for r in run.records[task]]
    io.write_text("\n".join(lines) + "\n", out / "samples.jsonl")
    io.write_json({"objective": objective_of(assets.model), "params": dataclasses.asdict(params),
                   "layout": {"text_chunk": layout.text_chunk, "audio_chunk": layout.audio_chunk},
                   "items": {t: len(i) for t, i in run.items.items()},
                   "generation_seconds": {t: round(s, 2) for t, s in run.seconds.items()}}, out / "summary.json")
    io.write_json(metrics, metrics_path)
    return metrics
