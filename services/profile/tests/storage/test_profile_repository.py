"""Profile use cases over real storage: the same bodies run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from zhike.profile.v1 import events_pb2
from zhike_profile.domain.facts import SourceKey
from zhike_profile.domain.model import LinkedSourceRecord
from zhike_profile.domain.source_events import SourceEvent
from zhike_profile.storage.schema import monthly_activity, profile, profile_source_record
from zhike_profile.transport.source_codec import decode_source_event
from zhike_runtime.errors import InvalidArgument, NotFound
from zhike_runtime.validation import Violations

from ..profile_harness import Harness
from ..source_facts import (
    T0,
    account_opened,
    balance_changed,
    interaction,
    risk_assessed,
    salary_paid,
    source_event,
)

T1 = T0 + dt.timedelta(minutes=1)
T2 = T0 + dt.timedelta(minutes=2)
CRM_1 = SourceKey("crm", "1")
CRM_2 = SourceKey("crm", "2")


def party() -> str:
    return str(uuid.uuid4())


async def count(harness: Harness, table: sa.Table) -> int:
    async with harness.database.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def records(harness: Harness, party_id: str) -> tuple[LinkedSourceRecord, ...]:
    return (await harness.queries.get_profile(party_id, with_facts=False)).profile.source_records


async def test_party_created_makes_an_empty_profile(harness: Harness) -> None:
    party_id = party()

    await harness.created("e1", party_id, T0)

    found = (await harness.profile(party_id)).profile
    assert (found.party_id, found.source_records, found.created_at) == (party_id, (), T0)


async def test_a_party_is_created_at_its_earliest_event_whichever_arrives_first(
    harness: Harness,
) -> None:
    party_id = party()

    await harness.linked("e2", CRM_1, party_id, 1, T1)
    await harness.created("e1", party_id, T0)
    await harness.created("e3", party_id, T2)

    assert (await harness.profile(party_id)).profile.created_at == T0
    assert await count(harness, profile) == 1


async def test_linked_records_are_listed_in_link_order(harness: Harness) -> None:
    party_id = party()

    await harness.linked("e1", SourceKey("cards", "C-77"), party_id, 1, T2)
    await harness.linked("e2", SourceKey("core-banking", "CIF-1"), party_id, 1, T1)

    assert await records(harness, party_id) == (
        LinkedSourceRecord("core-banking", "CIF-1", T1),
        LinkedSourceRecord("cards", "C-77", T2),
    )


async def test_the_same_link_delivered_twice_keeps_one_record(harness: Harness) -> None:
    party_id = party()

    assert await harness.linked("e1", CRM_1, party_id, 1, T1)
    assert not await harness.linked("e1", CRM_1, party_id, 1, T1)

    assert await records(harness, party_id) == (LinkedSourceRecord("crm", "1", T1),)
    assert await count(harness, profile_source_record) == 1


async def test_a_newer_link_moves_the_record(harness: Harness) -> None:
    first, second = party(), party()
    await harness.linked("e1", CRM_1, first, 1, T1)
    await harness.linked("e2", CRM_2, first, 1, T1)

    await harness.linked("e3", CRM_1, second, 2, T2)

    assert await records(harness, first) == (LinkedSourceRecord("crm", "2", T1),)
    assert await records(harness, second) == (LinkedSourceRecord("crm", "1", T2),)


async def test_a_delayed_retry_of_an_older_link_never_puts_a_moved_record_back(
    harness: Harness,
) -> None:
    """The defect this replaces: link() overwrote unconditionally, so the consumer's retry of
    a link that had failed once (the same event, redelivered after the move was applied) put
    the record back on its old party for good."""
    first, second = party(), party()
    await harness.linked("moved", CRM_1, second, 2, T2)

    await harness.linked("linked", CRM_1, first, 1, T1)  # the retry, late

    assert await records(harness, first) == ()
    assert await records(harness, second) == (LinkedSourceRecord("crm", "1", T2),)


async def test_a_newer_link_wins_over_an_older_one_even_with_an_earlier_clock(
    harness: Harness,
) -> None:
    """Identity's link version orders a record's links, not the times on them."""
    first, second = party(), party()
    await harness.linked("e1", CRM_1, first, 1, T2)

    await harness.linked("e2", CRM_1, second, 2, T1)
    await harness.linked("e1-again", CRM_1, first, 1, T2)

    assert await records(harness, second) == (LinkedSourceRecord("crm", "1", T1),)


async def test_a_link_to_a_party_merged_away_lands_on_the_survivor(harness: Harness) -> None:
    survivor, retired = party(), party()
    await harness.linked("e1", CRM_1, survivor, 1, T0)
    await harness.merged("e2", survivor, [retired], T1)

    await harness.linked("e3", CRM_2, retired, 1, T0)  # sent before the merge, arrived after

    assert {r.key for r in await records(harness, survivor)} == {CRM_1, CRM_2}
    assert (await harness.profile(retired)).profile.party_id == survivor


async def test_a_party_is_found_by_any_of_its_source_records(harness: Harness) -> None:
    survivor, retired = party(), party()
    await harness.linked("e1", CRM_1, retired, 1, T0)
    await harness.merged("e2", survivor, [retired], T1)

    found = await harness.queries.get_profile(source=CRM_1)

    assert found.profile.party_id == survivor
    with pytest.raises(NotFound):
        await harness.queries.get_profile(source=SourceKey("crm", "unknown"))


async def test_a_failed_transaction_leaves_no_profile(harness: Harness) -> None:
    party_id = party()

    async def link_then_fail() -> None:
        async with harness.unit() as unit:
            await unit.parties.ensure(party_id, T0)
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await link_then_fail()

    assert await count(harness, profile) == 0


async def test_get_profile_for_unknown_party_is_not_found(harness: Harness) -> None:
    unknown = party()

    with pytest.raises(NotFound) as caught:
        await harness.profile(unknown)

    assert (caught.value.resource, caught.value.resource_id) == ("profile", unknown)


@pytest.mark.parametrize("party_id", ["", "not-a-uuid", "a.b.>"])
async def test_get_profile_with_malformed_id_names_party_id(
    harness: Harness, party_id: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await harness.profile(party_id)

    assert [v.field for v in caught.value.violations] == ["party_id"]


# --- source facts ---------------------------------------------------------------------------


async def test_a_balance_older_than_the_one_held_changes_nothing(harness: Harness) -> None:
    party_id = party()
    await harness.linked("l1", CRM_1, party_id, 1)
    await harness.source(source_event("crm", "1", "a1", 1, **account_opened("ACC", "USD")))
    await harness.source(source_event("crm", "1", "b3", 3, **balance_changed("ACC", "USD", 0)))

    await harness.source(source_event("crm", "1", "b2", 2, **balance_changed("ACC", "USD", 900)))

    assert await harness.balances(party_id) == {"USD": 0}


async def test_facts_before_the_records_link_count_from_the_moment_it_arrives(
    harness: Harness,
) -> None:
    party_id = party()
    await harness.source(source_event("crm", "1", "b2", 2, **balance_changed("ACC", "USD", 600000)))
    await harness.source(source_event("crm", "1", "a1", 1, **account_opened("ACC", "USD")))
    assert await harness.changes() == []  # no party yet: nothing to tell

    await harness.linked("l1", CRM_1, party_id, 1)

    assert await harness.balances(party_id) == {"USD": 600000}
    (changed,) = await harness.changes()
    assert changed.cause == events_pb2.CHANGE_CAUSE_IDENTITY
    opened = [f.holding_opened for f in changed.facts if f.HasField("holding_opened")]
    assert [(o.account_id, o.currency_code) for o in opened] == [("ACC", "USD")]
    assert _balance_changes(changed) == [("USD", 0, 600000)]


async def test_usd_6000_withdrawn_to_0_is_told_as_the_usd_balance_change(
    harness: Harness,
) -> None:
    party_id = party()
    await harness.linked("l1", CRM_1, party_id, 1)
    await harness.source(source_event("crm", "1", "a1", 1, **account_opened("ACC", "USD")))
    await harness.source(source_event("crm", "1", "b2", 2, **balance_changed("ACC", "USD", 600000)))

    await harness.source(
        source_event("crm", "1", "b3", 3, **balance_changed("ACC", "USD", 0, change=-600000))
    )

    assert await harness.balances(party_id) == {"USD": 0}
    last = (await harness.changes())[-1]
    assert last.party_id == party_id
    assert last.cause == events_pb2.CHANGE_CAUSE_SOURCE_EVENT
    assert _balance_changes(last) == [("USD", 600000, 0)]
    assert [f.segment_left.segment for f in last.facts if f.HasField("segment_left")] == [
        "foreign_currency_holder",
        "usd_holder",
    ]


async def test_each_profile_changed_of_a_party_has_the_next_version(harness: Harness) -> None:
    party_id = party()
    await harness.linked("l1", CRM_1, party_id, 1)
    await harness.source(source_event("crm", "1", "a1", 1, **account_opened("ACC", "USD")))
    await harness.source(source_event("crm", "1", "b2", 2, **balance_changed("ACC", "USD", 100)))
    await harness.source(source_event("crm", "1", "b2", 2, **balance_changed("ACC", "USD", 100)))

    versions = [c.profile_version for c in await harness.changes() if c.party_id == party_id]

    assert versions == list(range(1, len(versions) + 1))
    assert (await harness.profile(party_id)).profile.version == versions[-1]


async def test_a_batch_of_source_events_is_told_once_per_party(harness: Harness) -> None:
    """The consumer applies a fetch of events in one transaction: one ProfileChanged per party
    for all of them, saying where they left it."""
    first, second = party(), party()
    await harness.linked("l1", CRM_1, first, 1)
    await harness.linked("l2", CRM_2, second, 1)
    told_before = len(await harness.changes())
    messages = [
        source_event("crm", "1", "a1", 1, **account_opened("ACC", "USD")),
        source_event("crm", "1", "b2", 2, **balance_changed("ACC", "USD", 100)),
        source_event("crm", "1", "b3", 3, **balance_changed("ACC", "USD", 700)),
        source_event("crm", "2", "a1", 1, **account_opened("ACC", "EUR")),
        source_event("crm", "3", "a1", 1, **account_opened("ACC", "EUR")),  # not linked yet
    ]
    events = [decoded(harness, message) for message in messages]

    await harness.deliver("batch", lambda unit: harness.updates.apply_source_events(unit, events))

    told = (await harness.changes())[told_before:]
    assert sorted(c.party_id for c in told) == sorted([first, second])
    (to_first,) = [c for c in told if c.party_id == first]
    assert _balance_changes(to_first) == [("USD", 0, 700)]


def decoded(harness: Harness, message: Any) -> SourceEvent:
    v = Violations()
    event = decode_source_event(v, "", message, harness.now, harness.clock.zone)
    v.raise_if_any()
    assert event is not None
    return event


async def test_an_expired_risk_assessment_is_told_once_on_the_day_it_expires(
    harness: Harness,
) -> None:
    party_id = party()
    await harness.linked("l1", CRM_1, party_id, 1)
    assessed = risk_assessed(3, dt.date(2025, 11, 3), dt.date(2026, 11, 3))
    await harness.source(source_event("crm", "1", "r1", 1, **assessed))
    (valid,) = [
        f for c in await harness.changes() for f in c.facts if f.HasField("risk_level_changed")
    ]
    assert (valid.risk_level_changed.before, valid.risk_level_changed.after) == (0, 3)
    assert await harness.updates.tell_expired_risks(harness.unit) == 0  # 2 November: valid

    harness.now = T0 + dt.timedelta(days=1)  # 3 November in Shanghai: no longer valid
    assert await harness.updates.tell_expired_risks(harness.unit) == 1
    assert await harness.updates.tell_expired_risks(harness.unit) == 0  # told once

    last = (await harness.changes())[-1]
    assert (last.party_id, last.cause) == (party_id, events_pb2.CHANGE_CAUSE_TIME)
    (expired,) = [
        f.risk_assessment_expired for f in last.facts if f.HasField("risk_assessment_expired")
    ]
    assert expired.customer_risk == 3
    assert (expired.expire_date.year, expired.expire_date.month, expired.expire_date.day) == (
        2026,
        11,
        3,
    )


def _segments_entered(changed: events_pb2.ProfileChanged) -> list[str]:
    return [f.segment_entered.segment for f in changed.facts if f.HasField("segment_entered")]


async def segments(harness: Harness, party_id: str) -> set[str]:
    assessment = (await harness.profile(party_id)).assessment
    assert assessment is not None
    return {segment.name for segment in assessment.segments}


async def a_visitor(harness: Harness) -> str:
    """A party whose last branch visit is on T0: not dormant until 180 days have passed."""
    party_id = party()
    await harness.linked("l1", CRM_1, party_id, 1)
    await harness.source(source_event("crm", "1", "v1", 1, **interaction()))
    assert "dormant" not in await segments(harness, party_id)
    return party_id


async def test_a_customer_who_turns_dormant_is_told_by_the_daily_refresh_on_that_day_once(
    harness: Harness,
) -> None:
    party_id = await a_visitor(harness)
    harness.now = T0 + dt.timedelta(days=100)  # still visited within 180 days
    assert await harness.updates.refresh_stale(harness.unit) == [party_id]
    told_before = len(await harness.changes())

    harness.now = T0 + dt.timedelta(days=181)
    assert await harness.updates.refresh_stale(harness.unit) == [party_id]
    assert await harness.updates.refresh_stale(harness.unit) == []  # once a day

    (told,) = (await harness.changes())[told_before:]
    assert (told.party_id, told.cause) == (party_id, events_pb2.CHANGE_CAUSE_TIME)
    assert _segments_entered(told) == ["dormant"]
    assert "dormant" in await segments(harness, party_id)


async def test_the_daily_refresh_tells_nothing_when_time_changed_nothing(
    harness: Harness,
) -> None:
    party_id = await a_visitor(harness)
    told_before = len(await harness.changes())

    harness.now = T0 + dt.timedelta(days=1)
    assert await harness.updates.refresh_stale(harness.unit) == [party_id]

    assert len(await harness.changes()) == told_before


async def test_the_daily_refresh_skips_a_party_merged_away(harness: Harness) -> None:
    survivor, retired = party(), party()
    await harness.linked("l1", CRM_1, survivor, 1)
    await harness.linked("l2", CRM_2, retired, 1)
    await harness.merged("m1", survivor, [retired])

    harness.now = T0 + dt.timedelta(days=1)
    assert await harness.updates.refresh_stale(harness.unit) == [survivor]


async def test_the_daily_refresh_goes_through_every_party_round_by_round(
    harness: Harness,
) -> None:
    parties = sorted([party() for _ in range(5)])
    for index, party_id in enumerate(parties):
        await harness.linked(f"l{index}", SourceKey("crm", str(index)), party_id, 1)
    harness.now = T0 + dt.timedelta(days=1)

    first = await harness.updates.refresh_stale(harness.unit, "", limit=3)
    rest = await harness.updates.refresh_stale(harness.unit, first[-1], limit=3)

    assert (first, rest) == (parties[:3], parties[3:])
    assert await harness.updates.refresh_stale(harness.unit) == []


async def test_two_replicas_refreshing_at_once_tell_a_change_once(harness: Harness) -> None:
    party_id = await a_visitor(harness)
    told_before = len(await harness.changes())
    harness.now = T0 + dt.timedelta(days=181)

    await asyncio.gather(
        harness.updates.refresh_stale(harness.unit),
        harness.updates.refresh_stale(harness.unit),
    )

    (told,) = (await harness.changes())[told_before:]
    assert (told.party_id, _segments_entered(told)) == (party_id, ["dormant"])


def _balance_changes(changed: events_pb2.ProfileChanged) -> list[tuple[str, int, int]]:
    return [
        (
            f.balance_changed.currency_code,
            f.balance_changed.before_minor_units,
            f.balance_changed.after_minor_units,
        )
        for f in changed.facts
        if f.HasField("balance_changed")
        and f.balance_changed.side == events_pb2.BALANCE_SIDE_ASSETS
    ]


BIGINT_MAX = 2**63 - 1


async def test_a_transaction_that_would_overflow_its_months_sums_is_refused_and_they_stay(
    harness: Harness,
) -> None:
    # A month that has taken 9,223 credits of the largest amount accepted (10^15 minor units).
    credited = 9_223 * 10**15
    await harness.source(source_event("core", "R1", "e1", 1, **salary_paid("A-1", 10**15)))
    async with harness.database.engine.begin() as connection:
        await connection.execute(
            sa.update(monthly_activity).values(credit_minor=credited, salary_minor=credited)
        )
    assert credited + 10**15 > BIGINT_MAX

    # PostgreSQL refuses the BIGINT out of range itself (SQLSTATE 22003); SQLite, which would
    # store a REAL, by the sum's NOT NULL: an error as it is, not a conflict to retry. The
    # consumer retries either, then dead-letters it.
    refusal = (
        sa.exc.DBAPIError if harness.database.dialect == "postgresql" else sa.exc.IntegrityError
    )
    with pytest.raises(refusal):
        await harness.source(source_event("core", "R1", "e2", 2, **salary_paid("A-1", 10**15)))

    async with harness.database.session() as session:
        sums = (
            await session.execute(
                sa.select(monthly_activity.c.transactions, monthly_activity.c.credit_minor)
            )
        ).all()
    assert [tuple(row) for row in sums] == [(1, credited)]
