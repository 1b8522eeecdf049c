"""Issue 2, journey 3 (RELIABILITY R1, single node): kill -9 the broker while 1,000 records are
being linked, restart it on the same store; every event reaches the profile exactly once."""

from __future__ import annotations

import asyncio
import itertools

import grpc

from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, eventually

from .conftest import ServiceProcess
from .journeys import link, scalar, source_record

RECORDS = 1000
CONCURRENCY = 16


async def test_broker_killed_mid_stream_loses_and_duplicates_nothing(
    services: dict[str, ServiceProcess], nats: NatsServer
) -> None:
    identity, profile = services["identity"], services["profile"]
    identity.start()
    profile.start()
    await identity.wait_serving()
    await profile.wait_serving()

    counter = itertools.count()
    linked: list[str] = []
    broker_killed = asyncio.Event()

    async def link_records(channel: grpc.aio.Channel) -> None:
        while (i := next(counter)) < RECORDS:
            response = await link(channel, source_record("core_deposits", f"D-{i:05d}"))
            linked.append(response.party_id)
            if len(linked) == RECORDS // 3 and not broker_killed.is_set():
                broker_killed.set()
                nats.kill()  # SIGKILL with events in flight

    async def restart_broker_later() -> None:
        await broker_killed.wait()
        await asyncio.sleep(2.0)
        nats.start()  # same port, same JetStream store

    async with authorised_channel(identity.address) as channel:
        await asyncio.gather(
            restart_broker_later(), *(link_records(channel) for _ in range(CONCURRENCY))
        )
    assert len(linked) == RECORDS
    assert len(set(linked)) == RECORDS

    async def everything_applied() -> bool:
        return (
            scalar(profile.database_file, "SELECT count(*) FROM profile_source_record") == RECORDS
        )

    await eventually(everything_applied, timeout=60, interval=0.5)

    async def outbox_drained() -> bool:
        return (
            scalar(
                identity.database_file,
                "SELECT count(*) FROM outbox_event WHERE published_at IS NULL",
            )
            == 0
        )

    await eventually(outbox_drained, timeout=30)
    # Exactly once: one profile per party, one effect per event (the inbox holds each id once).
    assert scalar(profile.database_file, "SELECT count(*) FROM profile") == RECORDS
    assert (
        scalar(profile.database_file, "SELECT count(DISTINCT party_id) FROM profile_source_record")
        == RECORDS
    )
    # Each link commits three events (PartyCreated, SourceRecordLinked, GoldenRecordChanged).
    events = 3 * RECORDS
    assert scalar(identity.database_file, "SELECT count(*) FROM outbox_event") == events
    assert scalar(profile.database_file, "SELECT count(*) FROM inbox_event") == events
    assert identity.stop() == 0
    assert profile.stop() == 0
