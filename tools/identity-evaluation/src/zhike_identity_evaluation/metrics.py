"""Pairwise precision, recall and F1 of a predicted grouping against the truth.

A grouping maps every record key to a label (a person id in the truth, a party id in a resolver's
output). A *pair* is two records with the same label. Precision is the share of predicted pairs
that are true pairs, recall the share of true pairs that were predicted. The counts come from the
contingency table of (true label, predicted label) cells, never from enumerating pairs:

    true positive pairs = Σ over cells      C(n_cell, 2)
    predicted pairs     = Σ over predicted  C(n_party, 2)
    true pairs          = Σ over true       C(n_person, 2)

so a million records cost one pass. Conventions for empty denominators: with no predicted pairs
precision is 1.0 (nothing wrong was claimed); with no true pairs recall is 1.0 (nothing was there
to find); F1 is 0.0 when precision and recall are both 0.

Command line: `python -m zhike_identity_evaluation.metrics TRUTH.csv OUTPUT.csv` prints the scores
and the worst false merges and missed pairs.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from zhike_identity_evaluation.dataset import read_grouping

K = TypeVar("K", bound=Hashable)


def pairs(n: int) -> int:
    """C(n, 2): the number of pairs among n records."""
    return n * (n - 1) // 2


@dataclass(frozen=True, slots=True)
class PairwiseScores:
    records: int
    true_pairs: int
    predicted_pairs: int
    true_positive_pairs: int

    @property
    def false_positive_pairs(self) -> int:
        return self.predicted_pairs - self.true_positive_pairs

    @property
    def false_negative_pairs(self) -> int:
        return self.true_pairs - self.true_positive_pairs

    @property
    def precision(self) -> float:
        if self.predicted_pairs == 0:
            return 1.0
        return self.true_positive_pairs / self.predicted_pairs

    @property
    def recall(self) -> float:
        if self.true_pairs == 0:
            return 1.0
        return self.true_positive_pairs / self.true_pairs

    @property
    def f1(self) -> float:
        precision, recall = self.precision, self.recall
        if precision + recall == 0:
            return 0.0
        return 2 * precision * recall / (precision + recall)

    def __str__(self) -> str:
        return (
            f"precision {self.precision:.4f}  recall {self.recall:.4f}  F1 {self.f1:.4f}  "
            f"({self.records} records; pairs: {self.true_pairs} true, {self.predicted_pairs} "
            f"predicted, {self.true_positive_pairs} correct)"
        )


def _check_same_keys(truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable]) -> None:
    if len(truth) == len(predicted) and truth.keys() == predicted.keys():
        return
    missing = [key for key in truth if key not in predicted]
    extra = [key for key in predicted if key not in truth]
    raise ValueError(
        f"the prediction must label exactly the truth's records: {len(missing)} missing "
        f"(e.g. {missing[:3]}), {len(extra)} unknown (e.g. {extra[:3]})"
    )


def contingency(
    truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable]
) -> Counter[tuple[Hashable, Hashable]]:
    """How many records each (true label, predicted label) cell holds."""
    _check_same_keys(truth, predicted)
    return Counter((label, predicted[key]) for key, label in truth.items())


def pairwise_scores(truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable]) -> PairwiseScores:
    """Pairwise scores of `predicted` against `truth`; both must label the same keys."""
    cells = contingency(truth, predicted)
    true_sizes: Counter[Hashable] = Counter()
    predicted_sizes: Counter[Hashable] = Counter()
    for (true_label, predicted_label), n in cells.items():
        true_sizes[true_label] += n
        predicted_sizes[predicted_label] += n
    return PairwiseScores(
        records=len(truth),
        true_pairs=sum(pairs(n) for n in true_sizes.values()),
        predicted_pairs=sum(pairs(n) for n in predicted_sizes.values()),
        true_positive_pairs=sum(pairs(n) for n in cells.values()),
    )


# ----------------------------------------------------------------------------------------------
# Breakdown for debugging
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FalseMerge(Generic[K]):
    """A predicted group holding records of several true groups."""

    predicted_label: Hashable
    false_pairs: int
    members: dict[Hashable, list[K]]
    """True label → the records of that true group inside this predicted group."""


@dataclass(frozen=True)
class MissedPairs(Generic[K]):
    """A true group whose records were spread over several predicted groups."""

    true_label: Hashable
    missed_pairs: int
    parts: dict[Hashable, list[K]]
    """Predicted label → the records of this true group that went there."""


def _nested(
    outer: Mapping[K, Hashable], inner: Mapping[K, Hashable]
) -> dict[Hashable, dict[Hashable, list[K]]]:
    nested: dict[Hashable, dict[Hashable, list[K]]] = defaultdict(lambda: defaultdict(list))
    for key, label in outer.items():
        nested[label][inner[key]].append(key)
    return nested


def worst_false_merges(
    truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable], limit: int = 10
) -> list[FalseMerge[K]]:
    """The predicted groups with the most false pairs, worst first."""
    _check_same_keys(truth, predicted)
    merges = []
    for label, by_truth in _nested(predicted, truth).items():
        if len(by_truth) < 2:
            continue
        size = sum(len(keys) for keys in by_truth.values())
        false_pairs = pairs(size) - sum(pairs(len(keys)) for keys in by_truth.values())
        merges.append(FalseMerge(label, false_pairs, {t: list(k) for t, k in by_truth.items()}))
    merges.sort(key=lambda merge: (-merge.false_pairs, str(merge.predicted_label)))
    return merges[:limit]


def worst_missed_pairs(
    truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable], limit: int = 10
) -> list[MissedPairs[K]]:
    """The true groups with the most pairs the prediction missed, worst first."""
    _check_same_keys(truth, predicted)
    misses = []
    for label, by_prediction in _nested(truth, predicted).items():
        if len(by_prediction) < 2:
            continue
        size = sum(len(keys) for keys in by_prediction.values())
        missed = pairs(size) - sum(pairs(len(keys)) for keys in by_prediction.values())
        misses.append(MissedPairs(label, missed, {p: list(k) for p, k in by_prediction.items()}))
    misses.sort(key=lambda miss: (-miss.missed_pairs, str(miss.true_label)))
    return misses[:limit]


def breakdown(
    truth: Mapping[K, Hashable],
    predicted: Mapping[K, Hashable],
    limit: int = 5,
    describe: Mapping[K, str] | None = None,
) -> str:
    """A readable list of the worst false merges and missed pairs.

    `describe` may map a key to a short text (e.g. the record's values) shown next to it.
    """
    lines = []

    def show(key: K) -> str:
        return f"{key}  {describe[key]}" if describe and key in describe else str(key)

    for merge in worst_false_merges(truth, predicted, limit):
        lines.append(f"false merge: predicted {merge.predicted_label} ({merge.false_pairs} pairs)")
        for true_label, keys in merge.members.items():
            lines.extend(f"    truth {true_label}: {show(key)}" for key in keys)
    for miss in worst_missed_pairs(truth, predicted, limit):
        lines.append(f"missed: truth {miss.true_label} ({miss.missed_pairs} pairs)")
        for predicted_label, keys in miss.parts.items():
            lines.extend(f"    predicted {predicted_label}: {show(key)}" for key in keys)
    return "\n".join(lines)


def score_files(truth_csv: Path, output_csv: Path) -> PairwiseScores:
    """Score a resolver's output file (`source,source_id,party_id`) against a truth file."""
    return pairwise_scores(
        read_grouping(truth_csv, "person_id"), read_grouping(output_csv, "party_id")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zhike_identity_evaluation.metrics",
        description="Pairwise precision, recall and F1 of a resolver's output against the truth.",
    )
    parser.add_argument("truth", type=Path, help="truth.csv: source,source_id,person_id")
    parser.add_argument("output", type=Path, help="resolver output: source,source_id,party_id")
    parser.add_argument("--worst", type=int, default=5, help="how many worst cases to list")
    args = parser.parse_args(argv)
    truth = read_grouping(args.truth, "person_id")
    predicted = read_grouping(args.output, "party_id")
    sys.stdout.write(f"{pairwise_scores(truth, predicted)}\n")
    if args.worst:
        sys.stdout.write(breakdown(truth, predicted, args.worst) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
