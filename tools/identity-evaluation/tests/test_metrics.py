"""Pairwise precision, recall and F1 from contingency counts, checked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhike_identity_evaluation.dataset import write_grouping
from zhike_identity_evaluation.metrics import (
    breakdown,
    pairs,
    pairwise_scores,
    score_files,
    worst_false_merges,
    worst_missed_pairs,
)

# Truth A = {1, 2, 3}, B = {4, 5}, C = {6}; prediction X = {1, 2}, Y = {3, 4, 5, 6}.
TRUTH = {1: "A", 2: "A", 3: "A", 4: "B", 5: "B", 6: "C"}
MIXED = {1: "X", 2: "X", 3: "Y", 4: "Y", 5: "Y", 6: "Y"}


def test_pairs_counts_combinations_of_two() -> None:
    assert [pairs(n) for n in range(5)] == [0, 0, 1, 3, 6]


def test_identical_grouping_under_other_labels_scores_one() -> None:
    predicted = {key: f"party-{label}" for key, label in TRUTH.items()}
    scores = pairwise_scores(TRUTH, predicted)
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)
    assert (scores.true_pairs, scores.predicted_pairs, scores.true_positive_pairs) == (4, 4, 4)


def test_mixed_grouping_matches_the_hand_computed_counts() -> None:
    # Cells: (A,X)=2 → 1 pair, (A,Y)=1, (B,Y)=2 → 1 pair, (C,Y)=1: 2 correct pairs.
    # Predicted pairs: C(2,2) + C(4,2) = 7. True pairs: C(3,2) + C(2,2) = 4.
    scores = pairwise_scores(TRUTH, MIXED)
    assert (scores.true_positive_pairs, scores.predicted_pairs, scores.true_pairs) == (2, 7, 4)
    assert scores.precision == pytest.approx(2 / 7)
    assert scores.recall == pytest.approx(2 / 4)
    assert scores.f1 == pytest.approx(4 / 11)  # 2PR / (P + R) = (2/7) / (11/14)
    assert (scores.false_positive_pairs, scores.false_negative_pairs) == (5, 2)


def test_all_singletons_find_nothing_and_claim_nothing_wrong() -> None:
    predicted = {key: f"p{key}" for key in TRUTH}
    scores = pairwise_scores(TRUTH, predicted)
    assert scores.predicted_pairs == 0
    assert scores.precision == 1.0  # convention: no predicted pairs, nothing wrong claimed
    assert scores.recall == 0.0
    assert scores.f1 == 0.0


def test_one_big_cluster_finds_everything_with_many_false_pairs() -> None:
    predicted = dict.fromkeys(TRUTH, "everyone")
    scores = pairwise_scores(TRUTH, predicted)
    assert (scores.predicted_pairs, scores.true_positive_pairs) == (15, 4)
    assert scores.precision == pytest.approx(4 / 15)
    assert scores.recall == 1.0
    assert scores.f1 == pytest.approx(2 * (4 / 15) / (4 / 15 + 1))


def test_singleton_truth_and_singleton_prediction_is_perfect_by_convention() -> None:
    truth = {key: key for key in range(5)}
    scores = pairwise_scores(truth, {key: -key for key in range(5)})
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)


def test_one_cluster_of_100000_records_is_counted_not_enumerated() -> None:
    truth = {key: key // 2 for key in range(100_000)}  # 50,000 true pairs
    scores = pairwise_scores(truth, dict.fromkeys(truth, 0))
    assert scores.predicted_pairs == 100_000 * 99_999 // 2
    assert scores.true_positive_pairs == 50_000
    assert scores.recall == 1.0


def test_prediction_must_label_exactly_the_truths_records() -> None:
    with pytest.raises(ValueError, match="1 missing"):
        pairwise_scores(TRUTH, {key: "x" for key in range(1, 6)})
    with pytest.raises(ValueError, match="1 unknown"):
        pairwise_scores(TRUTH, {**MIXED, 7: "Z"})


def test_worst_false_merge_lists_the_mixed_party_and_its_people() -> None:
    [merge] = worst_false_merges(TRUTH, MIXED)
    assert merge.predicted_label == "Y"
    assert merge.false_pairs == 5  # C(4,2) − C(2,2)
    assert merge.members == {"A": [3], "B": [4, 5], "C": [6]}


def test_worst_missed_pairs_lists_the_split_person_and_its_parts() -> None:
    [miss] = worst_missed_pairs(TRUTH, MIXED)
    assert miss.true_label == "A"
    assert miss.missed_pairs == 2  # C(3,2) − C(2,2)
    assert miss.parts == {"X": [1, 2], "Y": [3]}


def test_worst_cases_are_ordered_worst_first_and_limited() -> None:
    truth = {key: key for key in range(9)}  # all different people
    predicted = {0: "a", 1: "a", 2: "b", 3: "b", 4: "b", 5: "c", 6: "c", 7: "c", 8: "c"}
    merges = worst_false_merges(truth, predicted, limit=2)
    assert [(m.predicted_label, m.false_pairs) for m in merges] == [("c", 6), ("b", 3)]


def test_breakdown_names_records_with_their_descriptions() -> None:
    text = breakdown(TRUTH, MIXED, describe={3: "王伟 | 13800138000"})
    assert "false merge: predicted Y (5 pairs)" in text
    assert "missed: truth A (2 pairs)" in text
    assert "3  王伟 | 13800138000" in text


def test_score_files_reads_truth_and_resolver_output(tmp_path: Path) -> None:
    truth = {("cards", str(key)): label for key, label in TRUTH.items()}
    output = {("cards", str(key)): label for key, label in MIXED.items()}
    write_grouping(tmp_path / "truth.csv", truth, "person_id")
    write_grouping(tmp_path / "output.csv", output, "party_id")
    scores = score_files(tmp_path / "truth.csv", tmp_path / "output.csv")
    assert (scores.true_positive_pairs, scores.predicted_pairs, scores.true_pairs) == (2, 7, 4)
