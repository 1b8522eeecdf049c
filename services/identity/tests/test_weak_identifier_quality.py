"""Customers without strong identifiers (issue 14): only a name, a birth date and an address,
with typos and nicknames, 5–12 records per person, households and twins among them."""

from __future__ import annotations

from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.resolver import resolve
from zhike_identity_evaluation import weak
from zhike_identity_evaluation.metrics import pairwise_scores


def test_the_weak_identifier_set_meets_the_quality_targets() -> None:
    # A small set so the test stays fast; benchmarks/identity/quality.py runs 50,000 records.
    weak_set = weak.build(persons=300, seed=weak.DEFAULT_SEED)
    rows = weak_set.rows
    resolution = resolve(
        [
            RawRecord(
                r.source,
                r.source_id,
                r.full_name,
                birth_date=r.birth_date,
                gender=r.gender,
                address=r.address,
            )
            for r in rows
        ],
        today=weak.REFERENCE_DATE,
    )
    predicted = {row.key: party for row, party in zip(rows, resolution.party_ids, strict=True)}
    scores = pairwise_scores(weak_set.truth, predicted)
    assert scores.precision >= 0.995, scores
    assert scores.recall >= 0.90, scores
    # Twins stay two people.
    party_of_person: dict[str, set[str]] = {}
    for row in rows:
        party_of_person.setdefault(weak_set.truth[row.key], set()).add(predicted[row.key])
    twins = [p for p in weak_set.persons if p.twin_of is not None]
    assert twins
    for twin in twins:
        assert not party_of_person[twin.person_id] & party_of_person[twin.twin_of or ""]
