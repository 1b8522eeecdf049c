"""Shared pieces of the identity benchmarks: running Zhike's batch resolver and reporting."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import say
from zhike_identity.batch import resolve_file
from zhike_identity_evaluation.metrics import PairwiseScores

__all__ = ["HEADER", "Timed", "row", "run_zhike", "say"]


@dataclass(frozen=True)
class Timed:
    records: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def run_zhike(records_csv: Path, output_csv: Path, *, household_guardrail: bool = True) -> Timed:
    """`resolve-csv` as a user runs it: in process, comparing pairs on every CPU."""
    _, _, report = resolve_file(
        records_csv,
        output_csv,
        progress=False,
        household_guardrail=household_guardrail,
        workers=os.cpu_count() or 1,
    )
    return Timed(records=report.records, seconds=report.seconds)


HEADER = f"{'dataset':<12} {'system':<20} {'records':>8} {'precision':>9} {'recall':>7} {'F1':>7} {'seconds':>8} {'records/s':>10}"


def row(dataset: str, system: str, timed: Timed, scores: PairwiseScores | None) -> str:
    quality = (
        f"{scores.precision:>9.4f} {scores.recall:>7.4f} {scores.f1:>7.4f}"
        if scores
        else f"{'-':>9} {'-':>7} {'-':>7}"
    )
    return (
        f"{dataset:<12} {system:<20} {timed.records:>8} {quality} {timed.seconds:>8.2f} "
        f"{timed.records_per_second:>10.0f}"
    )
