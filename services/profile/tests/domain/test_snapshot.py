"""The age in the snapshot a ProfileChanged describes: how it is told, and how a snapshot stored
before the profile told ages reads."""

from __future__ import annotations

from zhike_profile.domain.assessment import AgeChanged
from zhike_profile.domain.snapshot import (
    EMPTY,
    Snapshot,
    TierState,
    differences,
    from_json,
    to_json,
)

STANDARD = TierState("standard", "Standard", "Standard: no criterion met")
THIRTY = Snapshot(tier=STANDARD, age=30)  # assessed, 30 years old


def test_a_snapshot_stored_before_ages_were_told_tells_the_age_at_the_next_look() -> None:
    stored = to_json(THIRTY)
    assert from_json(stored) == THIRTY
    del stored["age"]  # as a release before this one stored it

    old = from_json(stored)

    assert old.age is None
    assert differences(old, THIRTY) == (AgeChanged(None, 30),)


def test_the_age_is_told_when_a_party_is_assessed_and_not_when_it_is_merged_away() -> None:
    # A party merged away is not assessed (EMPTY): it is told where it leads, not that its age
    # became unknown (as its tier).
    assert AgeChanged(None, 30) in differences(EMPTY, THIRTY)
    assert not [fact for fact in differences(THIRTY, EMPTY) if isinstance(fact, AgeChanged)]
