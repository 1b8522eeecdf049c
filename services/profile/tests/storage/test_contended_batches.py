"""Two replicas' batches share parties: a batch leaves out the events whose record or party
another transaction holds (when the consumer lets it) instead of queueing behind that whole
transaction, applies the rest, and waits only for the events it must apply. On PostgreSQL, the
only store where transactions hold locks side by side."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from zhike_profile.domain.facts import ProductLine, SourceKey
from zhike_profile.domain.service import party_lock, record_lock
from zhike_profile.domain.source_events import OpenAccount, SetBalance, SourceEvent
from zhike_runtime.testing.processes import PostgresCluster

from ..profile_harness import Harness
from ..source_facts import T0

HELD, FREE = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
R1, R2, R3 = SourceKey("core", "R1"), SourceKey("core", "R2"), SourceKey("wealth", "R3")


def deposit(key: SourceKey, minor: int) -> SourceEvent:
    return SourceEvent(
        source=key,
        event_id=f"{key.source_record_id}-{minor}",
        at=T0 - dt.timedelta(hours=1),
        sequence=1,
        changes=(
            OpenAccount("A", ProductLine.SAVINGS, "P1", "CNY", "0101", T0.date()),
            SetBalance("A", "CNY", minor),
        ),
    )


@pytest.fixture
async def harness(postgres_cluster: PostgresCluster) -> AsyncIterator[Harness]:
    harness = await Harness.start(postgres_cluster.create_database())
    await harness.linked("link-1", R1, HELD, 1, T0 - dt.timedelta(days=1))
    await harness.linked("link-2", R2, FREE, 1, T0 - dt.timedelta(days=1))
    yield harness
    await harness.close()


async def test_events_of_a_held_party_are_left_out_and_the_rest_applied_without_waiting(
    harness: Harness,
) -> None:
    # R3 is not linked yet: its facts are kept for when the link comes, no party to lock.
    events = [deposit(R1, 100), deposit(R2, 200), deposit(R3, 300), deposit(R1, 400)]
    told_before = len(await harness.changes())
    async with harness.unit() as other_replica, harness.unit() as unit:
        await other_replica.lock([party_lock(HELD)])
        left = await asyncio.wait_for(
            harness.updates.apply_source_events(unit, events, [True] * len(events)), timeout=10
        )
        assert left == {0, 3}  # both of R1's, whose party is held
        await unit.commit()
        await other_replica.commit()
    assert await harness.balances(FREE) == {"CNY": 200}
    assert await harness.balances(HELD) == {}
    assert [change.party_id for change in (await harness.changes())[told_before:]] == [FREE]
    # R3's facts were applied: they count once it is linked.
    await harness.linked("link-3", R3, FREE, 1)
    assert await harness.balances(FREE) == {"CNY": 500}


async def test_events_of_a_held_record_are_left_out(harness: Harness) -> None:
    async with harness.unit() as other_replica, harness.unit() as unit:
        await other_replica.lock([record_lock(R2)])
        left = await asyncio.wait_for(
            harness.updates.apply_source_events(
                unit, [deposit(R1, 100), deposit(R2, 200)], [True, True]
            ),
            timeout=10,
        )
        assert left == {1}
        await unit.commit()
        await other_replica.commit()
    assert await harness.balances(HELD) == {"CNY": 100}
    assert await harness.balances(FREE) == {}


async def test_an_event_that_may_not_be_left_out_waits_for_the_holder_and_is_applied(
    harness: Harness,
) -> None:
    async with harness.unit() as other_replica:
        await other_replica.lock([party_lock(HELD)])

        async def apply() -> set[int]:
            async with harness.unit() as unit:
                left = await harness.updates.apply_source_events(
                    unit, [deposit(R1, 100), deposit(R2, 200)], [False, True]
                )
                await unit.commit()
                return left

        applying = asyncio.create_task(apply())
        await asyncio.sleep(0.5)
        assert not applying.done()  # queued behind the holder's transaction
        await other_replica.commit()
        assert await asyncio.wait_for(applying, timeout=10) == set()
    assert await harness.balances(HELD) == {"CNY": 100}
    assert await harness.balances(FREE) == {"CNY": 200}
