"""Scoring rules on hand-made cases: error rates, answer matching, caption overlap, the majority label."""

from __future__ import annotations

import pytest

from stages import eval_metrics as m


def test_wer_and_cer_of_known_strings() -> None:
    assert m.wer(["the cat sat"], ["the cat sat down"]) == pytest.approx(1 / 3)  # one insertion, three words
    assert m.wer(["the cat sat", "on the mat"], ["the cat", "on a mat"]) == pytest.approx(2 / 6)
    assert m.cer(["abcd"], ["abed"]) == pytest.approx(1 / 4)
    assert m.wer(["The cat, sat!"], ["the cat sat"]) == 0.0, "case and punctuation are normalised away"
    assert m.wer(["There are 25 of them."], ["there are twenty-five of them"]) == 0.0, "numbers are spelled out"
    assert m.wer(["one two"], [""]) == 1.0 and m.cer(["ab"], [""]) == 1.0, "an empty transcript deletes everything"


def test_word_recall_counts_the_reference_words_heard_and_ignores_insertions() -> None:
    assert m.word_recall(["the cat sat"], ["The dog sat down down down down"]) == pytest.approx(2 / 3)
    assert m.word_recall(["the cat sat", "on the mat"], ["", "on the mat"]) == pytest.approx(3 / 6)
    assert m.word_recall(["one two"], [""]) == 0.0
    assert m.word_recall(["There are 25."], ["there are twenty-five"]) == 1.0, "the same normaliser as the WER"


def test_length_ratio_is_total_time_over_total_reference_time() -> None:
    assert m.length_ratio([3.0, 1.0], [1.0, 1.0]) == 2.0, "totals, so one long clip counts by its length"
    assert m.length_ratio([0.0, 0.0], [2.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="2 references but 1 durations"):
        m.length_ratio([1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="no duration"):
        m.length_ratio([1.0], [0.0])


def test_answer_matching_is_on_whole_normalised_words() -> None:
    assert m.contains_answer("Australia uses the Euro.", "euro")
    assert not m.contains_answer("It is in Europe.", "Euro"), "a word inside another word is no match"
    assert m.contains_answer("Martinique is in North America", "North America")
    assert not m.contains_answer("North is up", "North America")
    assert not m.contains_answer("anything", ""), "an empty answer matches nothing"
    assert m.exact_match("Paris.", "paris") and m.exact_match("pink noise", "pink_noise")
    assert not m.exact_match("The capital is Paris.", "Paris") and not m.exact_match("", "")


def test_token_f1() -> None:
    # shared: a, bell, rings -> precision 3/4, recall 3/5
    assert m.token_f1("a high bell rings", "a low bell rings twice") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert m.token_f1("Rain, pouring.", "rain pouring") == 1.0
    assert m.token_f1("", "rain") == 0.0 and m.token_f1("wind", "rain") == 0.0
    assert m.mean_token_f1(["rain", "x"], ["rain", "y"]) == 0.5
    with pytest.raises(ValueError):
        m.mean_token_f1(["a"], [])


def test_most_common_normalises_and_breaks_ties_deterministically() -> None:
    assert m.most_common(["Pink_noise", "pink noise", "bell", "Bell", "tone"]) == "bell", "2 vs 2: sorted first"
    assert m.most_common(["Pink_noise", "pink noise", "bell", "tone"]) == "Pink_noise"
    assert m.most_common(["tone", "bell"]) == "bell", "ties go to the first in sorted order"
    assert m.most_common(["Bell", "bell", "tone"]) == "Bell", "the first spelling is kept"
    with pytest.raises(ValueError):
        m.most_common([])


def test_best_constant_is_chosen_on_the_training_answers() -> None:
    # every answer once: each 4-word answer scores 11/23 on the others, the run "is in" 13/23; ties go to the first
    train = ["paris is in france", "lima is in peru", "rome is in italy", "oslo is in norway",
             "the nile is in egypt and sudan"]
    assert m.best_constant(train, m.wer) == "lima is in peru"
    assert m.wer(train, ["lima is in peru"] * 5) == pytest.approx(11 / 23)
    # no answer is short enough: the frequent word alone (5/9) beats every answer (>= 6/9)
    train = ["hello there", "there now", "so there", "there it is"]
    assert m.best_constant(train, m.wer) == "there"
    assert m.wer(train, ["there"] * 4) == pytest.approx(5 / 9)
    assert min(m.wer(train, [a] * 4) for a in train) == pytest.approx(6 / 9)
    with pytest.raises(ValueError):
        m.best_constant([], m.wer)
    with pytest.raises(ValueError, match="empty"):
        m.best_constant(["...", "!"], m.wer)


def test_accuracy_and_mean() -> None:
    assert m.accuracy([True, False, True, True]) == 0.75
    with pytest.raises(ValueError):
        m.accuracy([])
