"""The evaluation's scoring rules: pure functions of strings and numbers, one normaliser for all of them.

Every text comparison goes through `stages.asr_judge.normalize_text` (lower-case words, numbers spelled out,
punctuation and apostrophes dropped; its docstring lists the rules), the same normaliser the ASR judge's WER uses,
so "Paris." / "paris" or "25" / "twenty-five" never count as errors anywhere in the report.

- `wer` / `cer`: corpus word / character error rate (jiwer) over normalised texts; `word_recall`: the share of
  reference words the WER alignment matches (blind to inserted words).
- `contains_answer`: the normalised answer occurs in the normalised text as whole words (spoken QA, judged
  speech); `exact_match`: the normalised texts are equal (sound-event classes, QA answers).
- `token_f1`: SQuAD-style bag-of-words F1 between two normalised texts (captions).
- `length_ratio`: total seconds of the model's speech over total seconds of the reference speech (TTS).
- `majority` / `most_common`: the trivial baselines ("always answer the training set's most frequent label").
- `best_constant`: the strongest "ignores its input" baseline — of the most common training answers and the runs of
  the most frequent training words in their usual order ("the", "the of", ...), the one output that scores best on the *training*
  references, so a model that learned only to emit frequent words does not pass for one that listens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from stages.asr_judge import cer, normalize_text, wer, word_recall

__all__ = ["accuracy", "best_constant", "cer", "contains_answer", "exact_match", "length_ratio", "mean",
           "mean_token_f1", "most_common", "normalize_text", "token_f1", "wer", "word_recall"]


def exact_match(hypothesis: str, reference: str) -> bool:
    """The normalised texts are equal (and the reference is not empty)."""
    ref = normalize_text(reference)
    return bool(ref) and normalize_text(hypothesis) == ref


def contains_answer(text: str, answer: str) -> bool:
    """The normalised answer occurs in the normalised text as a run of whole words ("euro" is not in "europe")."""
    ans = normalize_text(answer)
    return bool(ans) and f" {ans} " in f" {normalize_text(text)} "


def token_f1(hypothesis: str, reference: str) -> float:
    """Bag-of-words F1 of the normalised texts: 1 for the same words, 0 for none shared (or an empty side)."""
    hyp, ref = normalize_text(hypothesis).split(), normalize_text(reference).split()
    common = sum((Counter(hyp) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; an empty sequence is an error (a metric over no items means nothing)."""
    if not values:
        raise ValueError("mean of no values")
    return float(sum(values) / len(values))


def accuracy(hits: Sequence[bool]) -> float:
    """Fraction of True."""
    return mean([float(h) for h in hits])


def mean_token_f1(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean of `token_f1` over aligned pairs."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return mean([token_f1(h, r) for h, r in zip(hypotheses, references)])


def length_ratio(seconds: Sequence[float], reference_seconds: Sequence[float]) -> float:
    """Total speech time over total reference time, for aligned items.

    Why beside the judge WER: whisper writes a fluent sentence for babble, about as many words as the clip could
    hold, so speech that runs on past its sentence buys insertions the WER counts and the recall does not. A ratio
    near 1 says the speaker knows when the sentence ends.
    """
    if len(seconds) != len(reference_seconds):
        raise ValueError(f"{len(reference_seconds)} references but {len(seconds)} durations")
    total = float(sum(reference_seconds))
    if total <= 0:
        raise ValueError("the reference speech has no duration")
    return float(sum(seconds)) / total


def most_common(labels: Sequence[str]) -> str:
    """The most frequent label after normalisation (ties: the first in sorted order, so it is deterministic),
    returned in its first original spelling."""
    if not labels:
        raise ValueError("no labels to take the most common of")
    spelling: dict[str, str] = {}
    for label in labels:
        spelling.setdefault(normalize_text(label), label)
    counts = Counter(normalize_text(label) for label in labels)
    best = min(counts, key=lambda k: (-counts[k], k))
    return spelling[best]


def best_constant(train: Sequence[str], error: Callable[[Sequence[str], Sequence[str]], float],
                  common_answers: int = 50, max_words: int = 8) -> str:
    """The candidate with the lowest `error(references, [candidate] * n)` on the training answers `train` (ties:
    the earlier candidate). Candidates: the `common_answers` most frequent answers, then for k = 1..`max_words`
    the k most frequent words, each placed at its mean relative position in the answers (normalised)."""
    if not train:
        raise ValueError("no training answers to choose a constant from")
    normalised = [normalize_text(t) for t in train]
    answers = [a for a, _ in sorted(Counter(normalised).items(), key=lambda kv: (-kv[1], kv[0]))[:common_answers]]
    word_counts: Counter[str] = Counter()
    place: Counter[str] = Counter()  # sum of each word's relative position (0 first .. 1 last) in its answers
    for text in normalised:
        tokens = text.split()
        for i, w in enumerate(tokens):
            word_counts[w] += 1
            place[w] += i / max(len(tokens) - 1, 1)
    words = [w for w, _ in sorted(word_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_words]]
    runs = [sorted(words[:k], key=lambda w: (place[w] / word_counts[w], w)) for k in range(1, len(words) + 1)]
    candidates = [a for a in answers if a] + [" ".join(run) for run in runs]
    if not candidates:
        raise ValueError("the training answers are all empty after normalisation")
    return min(candidates, key=lambda c: error(train, [c] * len(train)))
