"""Limits on what the streams hold: events and dead letters expire after the configured max age
(they carry personal data), and an event larger than the server's max_payload is refused with a
clear error and kept in the outbox, without costing the connection or the events behind it."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from zhike_runtime.app import Platform, ServiceDefinition, Wiring
from zhike_runtime.events.bus import DLQ_STREAM, EventBus, message_size
from zhike_runtime.events.outbox import add_to_outbox
from zhike_runtime.events.relay import OutboxRelay
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import eventually, running_service

from ..conftest import TEST_STREAM, Backbone, ping

WEEK = 7 * 86400


def streams_only(_platform: Platform[ServiceSettings]) -> Wiring:
    return Wiring()


PRODUCER = ServiceDefinition(
    name="producer",
    settings_type=ServiceSettings,
    grpc_service_names=(),
    migrations=None,
    stream=TEST_STREAM,
    wire=streams_only,
)


async def max_ages(bus: EventBus) -> dict[str, float | None]:
    return {
        name: (await bus.js.stream_info(name)).config.max_age
        for name in (TEST_STREAM.name, DLQ_STREAM)
    }


async def test_a_service_creates_its_stream_and_the_dead_letters_with_the_configured_max_age(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with running_service(
        PRODUCER,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'producer.db'}",
        nats_url=nats_server.url,
        stream_max_age_seconds=WEEK,
    ) as service:
        await service.bus.wait_ready()
        assert await max_ages(service.bus) == {TEST_STREAM.name: WEEK, DLQ_STREAM: WEEK}


async def test_streams_created_without_a_max_age_get_it_on_the_next_declaration(
    nats_server: NatsServer,
) -> None:
    old = EventBus(nats_server.url, "old-release")
    old.add_stream(TEST_STREAM)
    await old.run()
    assert set((await max_ages(old)).values()) == {0}  # 0: kept forever, as before
    await old.close()

    new = EventBus(nats_server.url, "new-release", max_age_seconds=WEEK)
    new.add_stream(TEST_STREAM)
    await new.run()
    assert set((await max_ages(new)).values()) == {WEEK}
    await new.close()


async def test_an_event_over_max_payload_stays_in_the_outbox_and_the_rest_go_out(
    backbone: Backbone,
) -> None:
    backbone.nats.max_payload = 4096
    backbone.nats.restart()
    # The payload alone fits; with its headers it does not. The client library checks the
    # payload only, and the server answers an oversized message by closing the connection.
    too_big = ping("x" * 4000)
    events = [ping("before"), too_big, ping("after")]
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, events)
        headers = (await session.execute(sa.select(outbox_event.c.headers))).scalars().first()
    assert len(too_big.message.SerializeToString()) < 4096
    assert message_size(too_big.message.SerializeToString(), headers) > 4096

    bus = backbone.bus("producer")
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry)
    with captured_json_logs() as lines:
        assert await relay.publish_batch() == 2
        assert await relay.publish_batch() == 0  # retried, still refused, reported once
    assert bus.is_connected
    assert await relay.backlog() == 1
    assert (await bus.js.stream_info(TEST_STREAM.name)).state.messages == 2
    [error] = [json.loads(line) for line in lines if '"severity": "ERROR"' in line]
    assert error["message"] == "event larger than the NATS max_payload; kept in the outbox"
    assert error["event_id"] == too_big.event_id
    assert error["max_payload_bytes"] == 4096
    assert error["size_bytes"] > 4096

    # Once the operator raises max_payload, the kept event goes out: nothing was lost.
    backbone.nats.max_payload = 1024 * 1024
    backbone.nats.restart()

    async def published() -> bool:
        return bus.is_connected and await relay.publish_batch() == 1

    await eventually(published, timeout=15)
    assert await relay.backlog() == 0
    assert (await bus.js.stream_info(TEST_STREAM.name)).state.messages == 3
    await bus.close()
