"""Shared pieces of the identity benchmarks: running Zhike's batch resolver and reporting."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zhike_identity.evaluation.metrics import PairwiseScores

Resolver = Callable[[Path, Path], object]


@dataclass(frozen=True)
class Timed:
    records: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def load_resolver() -> Resolver | str:
    """`zhike_identity.batch.resolve_csv`, or why it cannot be imported (it is built in parallel)."""
    try:
        module = importlib.import_module("zhike_identity.batch")
    except ImportError as error:
        return f"zhike_identity.batch is not importable yet: {error}"
    resolve_csv = getattr(module, "resolve_csv", None)
    if not callable(resolve_csv):
        return "zhike_identity.batch has no resolve_csv yet"

    def resolve(input_path: Path, output_path: Path) -> object:
        return resolve_csv(input_path, output_path, progress=False)

    return resolve


def count_rows(records_csv: Path) -> int:
    with records_csv.open(encoding="utf-8") as file:
        return sum(1 for _ in file) - 1


def run_zhike(resolve: Resolver, records_csv: Path, output_csv: Path) -> Timed:
    started = time.perf_counter()
    resolve(records_csv, output_csv)
    return Timed(records=count_rows(records_csv), seconds=time.perf_counter() - started)


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


HEADER = f"{'dataset':<12} {'system':<8} {'records':>8} {'precision':>9} {'recall':>7} {'F1':>7} {'seconds':>8} {'records/s':>10}"


def row(dataset: str, system: str, timed: Timed, scores: PairwiseScores | None) -> str:
    quality = (
        f"{scores.precision:>9.4f} {scores.recall:>7.4f} {scores.f1:>7.4f}"
        if scores
        else f"{'-':>9} {'-':>7} {'-':>7}"
    )
    return (
        f"{dataset:<12} {system:<8} {timed.records:>8} {quality} {timed.seconds:>8.2f} "
        f"{timed.records_per_second:>10.0f}"
    )
