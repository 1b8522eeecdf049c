"""Interactions as the assessments count them, through storage (SQLite and PostgreSQL): by the
bank's business day (a contact at 00:30 in Shanghai is that day's, though it is the day before
in UTC), and over the whole year RFM's frequency covers, which starts before the activity
window in most months."""

from __future__ import annotations

import datetime as dt
import uuid

from zhike_profile.domain.facts import SourceKey

from ..profile_harness import Harness
from ..source_facts import T0, interaction, source_event

CORE = SourceKey("core", "C-1")


async def a_party_with_contacts(harness: Harness, *times: dt.datetime) -> str:
    """A party whose one record reported a branch visit at each of `times`."""
    party_id = str(uuid.uuid4())
    await harness.linked("l1", CORE, party_id, 1, T0 - dt.timedelta(days=400))
    for n, at in enumerate(times):
        await harness.source(source_event("core", "C-1", f"i{n}", n + 1, at, **interaction()))
    return party_id


async def test_a_contact_after_midnight_in_shanghai_counts_on_that_business_day(
    harness: Harness,
) -> None:
    # 00:30 on 2 November in Shanghai is 16:30 on 1 November in UTC; the harness's now is
    # 10:00 on 2 November in Shanghai.
    after_midnight = dt.datetime(2026, 11, 1, 16, 30, tzinfo=dt.UTC)
    party_id = await a_party_with_contacts(harness, after_midnight)

    view = await harness.profile(party_id)

    assert view.assessment is not None
    assert view.assessment.value.rfm.recency_days == 0


async def test_rfm_counts_a_contact_of_the_past_year_from_before_the_activity_window(
    harness: Harness,
) -> None:
    # As of 2 November 2026 the activity window starts on 1 December 2025; a visit on
    # 20 November 2025 is within the year RFM's frequency counts.
    last_year = dt.datetime(2025, 11, 20, 2, 0, tzinfo=dt.UTC)
    party_id = await a_party_with_contacts(harness, last_year, T0 - dt.timedelta(days=2))

    view = await harness.profile(party_id)

    assert view.assessment is not None
    assert view.assessment.value.rfm.frequency == 2
