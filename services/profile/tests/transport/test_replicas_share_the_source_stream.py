"""Two profile replicas share the source stream's durable, as the chart deploys them. Their
batches touch the same parties; a batch leaves an event whose party the other transaction holds
for a later batch instead of queueing behind it (the runtime's deferred events). On PostgreSQL,
where transactions hold locks side by side: every event is applied once, and the profiles end as
the events say."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import nats
import sqlalchemy as sa

from zhike.source.v1 import source_event_pb2 as pb
from zhike_profile.app import DEFINITION as PROFILE
from zhike_profile.domain.facts import SourceKey
from zhike_profile.domain.service import party_lock
from zhike_profile.settings import ProfileSettings
from zhike_profile.transport.event_handlers import SOURCE_DURABLE, SOURCE_STREAM
from zhike_profile.transport.source_codec import SUBJECT_PREFIX
from zhike_runtime.app import RunningService
from zhike_runtime.events.consumer import EventConsumer
from zhike_runtime.events.schema import inbox_event
from zhike_runtime.testing.processes import NatsServer, PostgresCluster
from zhike_runtime.testing.services import eventually, running_service

from ..profile_harness import Harness
from ..source_facts import T0, account_opened, balance_changed, publish, source_event
from ..streams import declare_notifications_stream_at

PARTIES = [str(uuid.UUID(int=n)) for n in (1, 2, 3)]
# Two records per party, in two source systems.
RECORDS = {
    SourceKey(system, f"{system}-{n}"): party
    for n, party in enumerate(PARTIES)
    for system in ("core", "cards")
}
CHANGES = 60  # balance changes per record, each higher than the last


def backlog() -> list[pb.SourceEvent]:
    """Each record's account opened, then its balance changes, records interleaved."""
    events = [
        source_event(
            k.source_system,
            k.source_record_id,
            f"{k.source_record_id}-0",
            1,
            **account_opened("A", "CNY"),
        )
        for k in RECORDS
    ]
    for change in range(1, CHANGES + 1):
        events += [
            source_event(
                k.source_system,
                k.source_record_id,
                f"{k.source_record_id}-{change}",
                change + 1,
                at=T0 + dt.timedelta(seconds=change),
                **balance_changed("A", "CNY", 100 * change),
            )
            for k in RECORDS
        ]
    return events


def source_consumers(*services: RunningService[ProfileSettings]) -> list[EventConsumer]:
    return [
        consumer
        for service in services
        for consumer in service.consumers
        if consumer.spec.durable == SOURCE_DURABLE
    ]


async def inbox_rows(harness: Harness) -> int:
    async with harness.database.session() as session:
        count = await session.scalar(
            sa.select(sa.func.count())
            .select_from(inbox_event)
            .where(inbox_event.c.consumer == SOURCE_DURABLE)
        )
    return int(count or 0)


async def test_two_replicas_apply_a_shared_backlog_once_leaving_a_held_party_for_later(
    postgres_cluster: PostgresCluster, nats_server: NatsServer
) -> None:
    url = postgres_cluster.create_database()
    harness = await Harness.start(url)
    try:
        for n, (key, party_id) in enumerate(RECORDS.items()):
            await harness.linked(f"link-{n}", key, party_id, 1, T0 - dt.timedelta(days=1))
        await declare_notifications_stream_at(nats_server.url)
        events = backlog()
        # The backlog is waiting when the replicas start (the stream as the profile declares
        # it), so their first fetches are full batches.
        client = await nats.connect(nats_server.url)
        try:
            js = client.jetstream()
            await js.add_stream(name=SOURCE_STREAM, subjects=[f"{SUBJECT_PREFIX}.>"])
            await asyncio.gather(*(publish(js, event) for event in events))
        finally:
            await client.close()
        # Another transaction holds the first party as the replicas start: their batches leave
        # its events for later rather than wait at once.
        async with harness.unit() as other_writer:
            await other_writer.lock([party_lock(PARTIES[0])])
            async with (
                running_service(
                    PROFILE, database_url=url, nats_url=nats_server.url, consumer_batch_size=32
                ) as first,
                running_service(
                    PROFILE, database_url=url, nats_url=nats_server.url, consumer_batch_size=32
                ) as second,
            ):
                consumers = source_consumers(first, second)
                assert len(consumers) == 2

                async def some_deferred() -> bool:
                    return sum(c.deferred for c in consumers) > 0

                await eventually(some_deferred, timeout=20)
                await other_writer.commit()

                async def all_applied() -> bool:
                    return sum(c.applied for c in consumers) >= len(events)

                await eventually(all_applied, timeout=60)
                assert sum(c.applied for c in consumers) == len(events)
                assert sum(c.dead_lettered for c in consumers) == 0
        assert await inbox_rows(harness) == len(events)
        final = 100 * CHANGES * 2  # each party: two records' last balances
        assert [await harness.balances(p) for p in PARTIES] == [{"CNY": final}] * 3
    finally:
        await harness.close()
