"""Issue 2, journey 3 (RELIABILITY R1, single node): kill -9 the broker while 1,000 records are
being linked, restart it on the same store; every event reaches the profile exactly once.

Issue 10, defect 3 (RELIABILITY R13): during a broker outage the APIs stay ready and answer,
writes wait in the outbox, and everything drains once the broker is back."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from zhike_runtime.testing.processes import NatsServer, free_port
from zhike_runtime.testing.services import (
    SERVING,
    TEST_SETTINGS,
    authorised_channel,
    eventually,
    readiness,
)

from .conftest import ServiceProcess, serving
from .journeys import link, profile_or_none, scalar, source_record

RECORDS = 1000
CONCURRENCY = 16


async def test_broker_killed_mid_stream_loses_and_duplicates_nothing(
    services: dict[str, ServiceProcess], nats: NatsServer
) -> None:
    identity, profile = services["identity"], services["profile"]
    await serving(identity, profile)

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


async def test_during_a_broker_outage_the_apis_answer_and_their_events_drain_after(
    services: dict[str, ServiceProcess], nats: NatsServer
) -> None:
    identity, profile = services["identity"], services["profile"]
    metrics_port = free_port()
    identity.extra_env |= {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
    }
    await serving(identity, profile)

    nats.stop()

    async def both_lost_the_broker() -> bool:
        return all(
            "NATS disconnected" in [e["message"] for e in s.logs()] for s in (identity, profile)
        )

    await eventually(both_lost_the_broker, timeout=15)
    await asyncio.sleep(3 * TEST_SETTINGS["health_check_interval_seconds"])
    # Ready and answering: a link commits its state and its events to the outbox...
    assert await readiness(identity.port) == SERVING
    assert await readiness(profile.port) == SERVING
    async with authorised_channel(identity.address) as channel:
        party_id = (await link(channel, source_record("branch", "B-1"))).party_id
    unsent = "SELECT count(*) FROM outbox_event WHERE published_at IS NULL"
    assert scalar(identity.database_file, unsent) == 3
    # ...and the profile answers too, from what it has (not yet this party).
    async with authorised_channel(profile.address) as channel:
        assert await profile_or_none(channel, party_id) is None

    # The broker's state is a metric (alerted on), not a readiness condition.
    async def reported_lost() -> bool:
        return await nats_connected(metrics_port) == {"identity": 0.0}

    await eventually(reported_lost, timeout=10)

    nats.start()

    async with authorised_channel(profile.address) as channel:

        async def the_profile_has_the_party() -> bool:
            return await profile_or_none(channel, party_id) is not None

        await eventually(the_profile_has_the_party, timeout=30, interval=0.3)

    # Marked sent once the broker acknowledges them, which may be after the profile has them.
    async def all_sent() -> bool:
        return scalar(identity.database_file, unsent) == 0

    await eventually(all_sent, timeout=10)

    async def reported_connected() -> bool:
        return await nats_connected(metrics_port) == {"identity": 1.0}

    await eventually(reported_connected, timeout=10)
    assert identity.stop() == 0
    assert profile.stop() == 0


async def nats_connected(metrics_port: int) -> dict[str, float]:
    """zhike_nats_connected by service, from a real Prometheus scrape of the process."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    families = text_string_to_metric_families(await asyncio.to_thread(scrape))
    return {
        sample.labels["service"]: sample.value
        for family in families
        if family.name == "zhike_nats_connected"
        for sample in family.samples
    }
