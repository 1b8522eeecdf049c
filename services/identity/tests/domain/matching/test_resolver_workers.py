"""Extracting features and comparing pairs in worker processes changes when a resolution ends,
never what it decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhike_identity.batch import read_records
from zhike_identity.domain.matching import resolver
from zhike_identity.domain.matching.comparison import Frequencies, Pattern, compare
from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity_evaluation import generator


def test_extracting_and_comparing_in_two_worker_processes_gives_the_same_parties_and_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator.write_csv(tmp_path, persons=600, seed=5)
    records = read_records(tmp_path / "records.csv").records
    # Small chunks, and workers from the first record and pair: the records are extracted in
    # two parts, and the candidate pairs and the model's random pairs both go through the
    # processes, in many chunks.
    monkeypatch.setattr(resolver, "PARALLEL_EXTRACTION_FROM", 1)
    monkeypatch.setattr(resolver, "PARALLEL_FROM", 1)
    monkeypatch.setattr(resolver, "COMPARE_CHUNK", 100)

    alone = resolver.resolve(records, workers=1)
    shared = resolver.resolve(records, workers=2)

    assert alone.pairs_compared > 10 * resolver.COMPARE_CHUNK
    assert shared.party_ids == alone.party_ids
    assert shared.problems == alone.problems
    assert shared.reviews == alone.reviews
    assert shared.model == alone.model
    assert len(set(alone.party_ids)) < len(records)  # records were grouped at all


def test_a_failure_comparing_the_random_pairs_aside_is_raised_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator.write_csv(tmp_path, persons=600, seed=5)
    records = read_records(tmp_path / "records.csv").records
    monkeypatch.setattr(resolver, "PARALLEL_FROM", 1)

    def failing_without_frequencies(
        a: RecordFeatures, b: RecordFeatures, frequencies: Frequencies | None = None, **kw: bool
    ) -> Pattern:
        if frequencies is None:  # only the random pairs, compared in their own process
            raise MemoryError("the process comparing the random pairs ran out of memory")
        return compare(a, b, frequencies, **kw)

    monkeypatch.setattr(resolver, "compare", failing_without_frequencies)

    with pytest.raises(RuntimeError, match=r"comparing the random pairs failed \(MemoryError\)"):
        resolver.resolve(records, workers=2)
