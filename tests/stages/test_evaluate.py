"""Evaluation: scores and baselines on hand-made items, test items read back from packed shards, and a whole run on
the tiny pipeline corpus with a random model (its decoder scripted to speak) and a stand-in ASR judge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pipeline_corpus as corpus
import pytest
import soundfile as sf

from stages import eval_generate
from stages.eval_data import EVAL_TASKS, EvalItem, load_items, train_answers
from stages.eval_generate import Answer, answer_budget
from stages.eval_metrics import wer
from stages.pack import PackParams
from stages.evaluate import (
    HEADLINES,
    EvaluateParams,
    Headline,
    TtsDurations,
    run_evaluate,
    score_asr,
    score_caption,
    score_qa,
    score_sound_cls,
    score_speed,
    score_tts,
)

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def item(task: str, reference: str, answer: str | None = None) -> EvalItem:
    return EvalItem(task=task, sample_id=f"smp-{reference}", doc_id="doc", prompt_ids=(1, 2, 3), answer_tokens=10,
                    reference=reference, answer=answer or reference, user_utt=None, assistant_utt=None)


def spoken(codes: int, total_s: float, decode_s: float, seconds: float, first: float | None) -> Answer:
    return Answer(text="", codes=np.zeros(codes, np.int64), pcm=np.zeros(int(seconds * 16000), np.float32), spans=1,
                  generated_tokens=codes, stop="eos", first_audio_s=first, total_s=total_s, decode_s=decode_s)


# --- scores and baselines on hand-made cases ---------------------------------------------------------------------
def test_asr_scores_and_baselines() -> None:
    items = [item("asr", "the cat sat"), item("asr", "a dog ran")]
    perfect = score_asr(items, ["The cat sat.", "a dog ran"], ["the cat sat", "the cat sat", "x y"])
    assert perfect["wer"] == 0.0 and perfect["cer"] == 0.0
    assert perfect["baseline_empty_wer"] == 1.0 and perfect["baseline_empty_cer"] == 1.0
    assert perfect["baseline_constant_wer"] == pytest.approx(3 / 6), "'the cat sat' everywhere: right once"
    # the best constant on these training answers is "the cat sat" too (the word run "the" does worse there)
    assert perfect["baseline_best_constant_wer"] == pytest.approx(3 / 6)
    half = score_asr(items, ["the cat sat", ""], ["x"])
    assert half["wer"] == pytest.approx(0.5)


def test_sound_classification_majority_and_chance() -> None:
    items = [item("sound_cls", c) for c in ("bell", "tone", "tone", "pink_noise")]
    train = ["bell", "bell", "Bell", "tone", "pink noise"]
    scores = score_sound_cls(items, ["Bell.", "tone", "bell", "pink noise"], train)
    assert scores["accuracy"] == 0.75
    assert scores["baseline_majority_accuracy"] == 0.25, "always 'bell'"
    assert scores["chance_accuracy"] == pytest.approx(1 / 3), "three classes after normalisation"


def test_qa_accuracy_from_text_and_from_the_judged_speech() -> None:
    items = [item("qa", "The capital of France is Paris.", "Paris"), item("qa", "Peru uses the Sol.", "Sol"),
             item("qa", "Chad is in Africa.", "Africa")]
    scores = score_qa(items, ["It is Paris.", "solar", "Africa"], ["paris", "", "africa"],
                      train=["Africa", "Asia", "Africa"])
    assert scores["text_accuracy"] == pytest.approx(2 / 3)
    assert scores["text_exact_accuracy"] == pytest.approx(1 / 3), "only the bare 'Africa' equals a reference"
    assert scores["spoken_accuracy"] == pytest.approx(2 / 3)
    assert scores["baseline_constant_accuracy"] == pytest.approx(1 / 3), "always 'Africa'"


def test_caption_overlap_and_constant_baseline() -> None:
    items = [item("sound_caption", "light rain dripping"), item("sound_caption", "a high bell rings")]
    scores = score_caption(items, ["light rain dripping", "a bell"], train=["heavy rain", "heavy rain", "a bell"])
    assert scores["token_f1"] == pytest.approx((1.0 + 2 * 1.0 * 0.5 / 1.5) / 2)
    assert scores["baseline_constant_token_f1"] == pytest.approx((2 * 0.5 * (1 / 3) / (0.5 + 1 / 3) + 0.0) / 2)
    # on the training captions "heavy rain" ties "a heavy rain" and "a heavy bell rain" (mean F1 2/3); first wins
    assert scores["baseline_best_constant_token_f1"] == pytest.approx(scores["baseline_constant_token_f1"])


def test_tts_judge_wer_ceilings_and_baselines() -> None:
    items = [item("tts", "red green blue"), item("tts", "one two")]
    scores = score_tts(items, texts=["red green blue", "one two"], judged=["red green", "one two"],
                       ceiling=["red green blue", "one two"], source=["red green blue", "one two"],
                       random_codes=["the", "uh"])
    assert scores["judge_wer"] == pytest.approx(1 / 5) and scores["text_wer"] == 0.0
    assert scores["ceiling_codec_wer"] == 0.0 and scores["baseline_silence_wer"] == 1.0
    assert scores["baseline_random_codes_wer"] == pytest.approx(1.0), "two substitutions, three deletions"
    assert scores["judge_word_recall"] == pytest.approx(4 / 5) and scores["ceiling_codec_word_recall"] == 1.0
    assert scores["baseline_random_codes_word_recall"] == 0.0
    assert "judge_word_recall_text_forced" not in scores, "no forced speech, no forced score"
    forced = score_tts(items, texts=["", ""], judged=["", ""], ceiling=["", ""], source=["", ""],
                       random_codes=["", ""], judged_forced=["red red red red red red", "two"])
    assert forced["judge_word_recall_text_forced"] == pytest.approx(2 / 5)
    assert forced["judge_wer_text_forced"] == pytest.approx(6 / 5), "3 insertions, 2 substitutions, 1 deletion"
    assert "speech_length_ratio" not in forced, "no durations, no length ratio"
    timed = score_tts(items, texts=["", ""], judged=["", ""], ceiling=["", ""], source=["", ""],
                      random_codes=["", ""], durations=TtsDurations(speech=[4.0, 2.0], forced=[], reference=[2.0, 1.0]))
    assert timed["speech_length_ratio"] == 2.0 and "speech_length_ratio_text_forced" not in timed
    both = TtsDurations(speech=[1.0, 2.0], forced=[3.0, 3.0], reference=[2.0, 2.0]).ratios()
    assert both == {"speech_length_ratio": 0.75, "speech_length_ratio_text_forced": 1.5}


def test_speed_figures() -> None:
    answers = [spoken(50, 2.0, 0.5, 2.0, 0.4), spoken(25, 1.0, 0.5, 1.0, 0.2),
               Answer(text="hi", codes=np.zeros(0, np.int64), pcm=np.zeros(0, np.float32), spans=0,
                      generated_tokens=3, stop="eos", first_audio_s=None, total_s=0.1, decode_s=0.0)]
    speed = score_speed(answers)
    assert speed["answers"] == 3 and speed["answers_with_audio"] == 2
    assert speed["time_to_first_audio_s"] == pytest.approx(0.3)
    assert speed["audio_tokens_per_s"] == pytest.approx(75 / 2.0), "codes over model time (wall minus codec)"
    assert speed["real_time_factor"] == pytest.approx(3.0 / 3.0)
    assert score_speed(answers[2:]) == {"answers": 1, "answers_with_audio": 0}


def test_headline_compares_with_the_strongest_baseline_in_its_direction() -> None:
    lower = Headline("asr", "wer", ("baseline_a", "baseline_b"), True, "WER")
    assert lower.best_baseline({"wer": 0.5, "baseline_a": 1.0, "baseline_b": 0.8}) == 0.8
    assert lower.beats_baseline({"wer": 0.5, "baseline_a": 1.0, "baseline_b": 0.8})
    assert not lower.beats_baseline({"wer": 0.8, "baseline_a": 1.0, "baseline_b": 0.8}), "a tie is not learned"
    higher = Headline("qa", "acc", ("baseline_a", "chance"), False, "acc")
    assert higher.best_baseline({"acc": 0.2, "baseline_a": 0.1, "chance": 0.25}) == 0.25
    assert not higher.beats_baseline({"acc": 0.2, "baseline_a": 0.1, "chance": 0.25})
    with pytest.raises(KeyError):
        higher.best_baseline({"acc": 0.2})
    assert {h.task for h in HEADLINES} == set(EVAL_TASKS), "every evaluated task has a headline score"


def test_answer_budget_scales_with_the_reference_and_stays_in_context() -> None:
    assert answer_budget(40, 100, 2.0, 200, 4096) == 88
    assert answer_budget(3000, 100, 2.0, 200, 4096) == 4096 - 100 - 200 - 2
    with pytest.raises(ValueError, match="no room"):
        answer_budget(10, 4000, 2.0, 200, 4096)


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="subset"):
        EvaluateParams(tasks=("asr", "chat"))
    with pytest.raises(ValueError):
        EvaluateParams(max_items=0)
    with pytest.raises(ValueError):
        EvaluateParams(steps_per_block=0)
    with pytest.raises(ValueError, match="block_len >= 0"):
        EvaluateParams(block_len=-1)
    assert EvaluateParams().sampler_config(13, 50, 7).chunk_len == 13


def test_tail_blocks_are_one_chunk_span_unless_set() -> None:
    assert EvaluateParams().sampler_config(12, 50, 7).block_len == 12  # follows pack.audio_chunk
    assert EvaluateParams().sampler_config(26, 50, 7).block_len == 26
    assert EvaluateParams(block_len=32).sampler_config(12, 50, 7).block_len == 32


# --- test items from the packed shards ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> corpus.Built:
    return corpus.build(tmp_path_factory)


def test_items_are_the_packed_test_prompts_with_their_references(built: corpus.Built) -> None:
    from stages.text_tokenizer import load_tokenizer

    tokenizer, _ = load_tokenizer(built.tokenizers / "text")
    items = load_items(built.shards, built.validated, ["qa", "asr"], max_items=3)
    assert list(items) == ["qa", "asr"] and len(items["qa"]) == 3 and len(items["asr"]) >= 1
    import polars as pl

    index = pl.read_parquet(built.shards / "index.parquet")
    samples = pl.read_parquet(built.validated / "samples.parquet")
    for it in items["qa"]:
        doc = index.filter(pl.col("doc_id") == it.doc_id).row(0, named=True)
        sample = samples.filter(pl.col("sample_id") == it.sample_id).row(0, named=True)
        assert doc["split"] == "test" and sample["split"] == "test"
        assert len(it.prompt_ids) == doc["prompt_len"] and it.answer_tokens == doc["length"] - doc["prompt_len"]
        assert tokenizer.decode(list(it.prompt_ids)).endswith("<|im_start|>assistant\n")
        assert it.answer == sample["answer"] and it.reference == sample["turns"][-1]["text"]
        assert it.user_utt == sample["turns"][0]["utt_id"] and it.assistant_utt == sample["turns"][1]["utt_id"]
    assert [i.sample_id for i in items["qa"]] == sorted(i.sample_id for i in items["qa"])
    assert set(train_answers(built.validated, "sound_cls")) <= set(samples["answer"])
    with pytest.raises(ValueError, match="cannot evaluate"):
        load_items(built.shards, built.validated, ["interleaved"], 3)


# --- a whole run ---------------------------------------------------------------------------------------------
class RecordingJudge:
    """Stands in for whisper: hears 'it is paris' in any non-empty clip, and remembers the clip lengths."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def transcribe_batch(self, clips: Sequence[np.ndarray]) -> list[str]:
        self.calls.append([len(c) for c in clips])
        return ["it is paris" if len(c) else "" for c in clips]


N_CODES = 20


def speaking_decoder(model, prompt_ids, spec, config, text_script=()):
    """The real TtT sampler, forced to write one word (or its `text_script`, which must open the tail span), speak
    one tail span of N_CODES codes and stop."""
    from model.sampler import forcing_hook, generate

    P = len(prompt_ids)
    markers = [spec.pad_id, spec.im_end_id, spec.begin_audio_id, spec.begin_audio_tail_id, spec.end_audio_id,
               spec.end_audio_tail_id]
    k = len(text_script) or 2  # ids up to and including <|begin_of_audio_tail|>
    forced = {P + k + N_CODES: spec.end_audio_tail_id, P + k + 1 + N_CODES: spec.im_end_id}
    if not text_script:
        forced[P + 1] = spec.begin_audio_tail_id
    return generate(model, prompt_ids, spec, config, logits_hook=forcing_hook(forced, markers),
                    text_script=text_script)


@pytest.mark.slow
def test_run_writes_metrics_records_and_audio(built: corpus.Built, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.chat import load_assets
    from model.modeling import build_model
    from stages.text_tokenizer import load_tokenizer

    _, spec = load_tokenizer(built.tokenizers / "text")
    build_model("tiny", spec, seed=0, **SMALL).save_pretrained(tmp_path / "ckpt")
    assets = load_assets(tmp_path / "ckpt", built.tokenizers, "cpu")
    monkeypatch.setitem(eval_generate.DECODERS, "ttt", speaking_decoder)
    judge = RecordingJudge()
    params = EvaluateParams(max_items=3, max_audio_len=40, steps_per_block=4)
    stale = tmp_path / "eval" / "audio" / "tts" / "smp-gone.wav"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    metrics = run_evaluate(params, PackParams(), 5, assets, judge, built.shards, built.validated, built.audio,
                           tmp_path / "eval", tmp_path / "metrics.json")

    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert set(metrics) == {*EVAL_TASKS, "speed"}
    items = load_items(built.shards, built.validated, EVAL_TASKS, 3)
    for task in EVAL_TASKS:
        assert metrics[task]["items"] == len(items[task]) <= 3
    assert metrics["asr"]["baseline_empty_wer"] == 1.0
    assert metrics["qa"]["spoken_accuracy"] == pytest.approx(
        np.mean([i.answer.lower() == "paris" for i in items["qa"]]))
    per_code = assets.codec.config.samples_per_token
    spoken_items = len(items["tts"]) + len(items["qa"])
    assert metrics["speed"]["answers_with_audio"] == spoken_items
    assert metrics["speed"]["audio_seconds"] == pytest.approx(spoken_items * N_CODES * per_code / 16000, rel=1e-3)
    assert metrics["speed"]["time_to_first_audio_s"] > 0 and metrics["speed"]["real_time_factor"] > 0

    records = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert len(records) == sum(len(v) for v in items.values())
    for r in records:
        assert r["audio_tokens"] == N_CODES
        if r["task"] in ("tts", "qa"):
            info = sf.info(str(tmp_path / "eval" / r["wav"]))
            assert info.samplerate == 16000 and info.frames == N_CODES * per_code and r["judge"] == "it is paris"
            assert r["stop"] == "eos"
        else:
            assert "wav" not in r and "judge" not in r
    tts = [r for r in records if r["task"] == "tts"]
    assert all((tmp_path / "eval" / r["ceiling_wav"]).is_file() for r in tts)
    reference_s = [sf.info(str(tmp_path / "eval" / r["ceiling_wav"])).duration for r in tts]
    assert [r["reference_s"] for r in tts] == pytest.approx(reference_s, abs=1e-3)
    model_s = len(tts) * N_CODES * per_code / 16000
    assert metrics["tts"]["speech_length_ratio"] == pytest.approx(model_s / sum(reference_s), abs=1e-3)
    assert metrics["tts"]["speech_length_ratio_text_forced"] == metrics["tts"]["speech_length_ratio"]
    # text-forced TTS: the reference sentence was written verbatim, then the model spoke
    assert all(r["forced_judge"] == "it is paris" and (tmp_path / "eval" / r["forced_wav"]).is_file() for r in tts)
    assert metrics["tts"]["judge_wer_text_forced"] == round(
        wer([i.reference for i in items["tts"]], ["it is paris"] * len(items["tts"])), 4)
    assert not stale.exists(), "audio of an earlier run's items is removed"
    # judge calls: model speech per spoken task, and for tts the text-forced speech, the codec round trip, the
    # original and random codes
    model_clips = [c for c in judge.calls if set(c) == {N_CODES * per_code}]
    assert sorted(map(len, model_clips)) == sorted([len(items["tts"]), len(items["tts"]), len(items["qa"])])
    assert len(judge.calls) == 2 + 4
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["objective"] == "ttt" and summary["items"] == {t: len(v) for t, v in items.items()}


def test_an_empty_task_is_refused(built: corpus.Built, tmp_path: Path) -> None:
    import polars as pl

    from stages import io

    shards = tmp_path / "shards"
    index = pl.read_parquet(built.shards / "index.parquet")
    io.write_parquet(index.filter(~((pl.col("split") == "test") & (pl.col("task") == "asr"))),
                     shards / "index.parquet")
    with pytest.raises(ValueError, match=r"no test documents for task\(s\) \['asr'\]"):
        run_evaluate(EvaluateParams(tasks=("asr",)), PackParams(), 0, assets=None, judge=RecordingJudge(),
                     shards_dir=shards, validated_dir=built.validated, audio_dir=built.audio, out_dir=tmp_path / "eval",
                     metrics_path=tmp_path / "m.json")
