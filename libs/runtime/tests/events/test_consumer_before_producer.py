"""A service that consumes another's stream is ready before that stream exists (two services
that consume each other's streams would otherwise each wait for the other), and its durable is
added, from the stream's first event, as soon as the producer declares the stream."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import sqlalchemy as sa
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncSession

from zhike.testing.v1 import events_pb2
from zhike_runtime.events.bus import ConsumerDeclaration, EventBus, StreamSpec
from zhike_runtime.events.consumer import ConsumerSpec, EventConsumer, EventContext, EventHandler
from zhike_runtime.events.outbox import OutgoingEvent, add_to_outbox
from zhike_runtime.events.relay import OutboxRelay
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import eventually

from ..conftest import Backbone, ping_effect

PRODUCER_STREAM = StreamSpec("TEST_PRODUCER", ("test.producer.>",))
DURABLE = ConsumerDeclaration(
    durable="consumer-producer",
    stream="TEST_PRODUCER",
    filter_subjects=("test.producer.>",),
    ack_wait_seconds=5.0,
)


async def test_a_consumer_is_ready_before_its_producer_and_reads_from_the_first_event(
    nats_server: NatsServer,
) -> None:
    consumer = EventBus(nats_server.url, "consumer")
    consumer.add_stream(StreamSpec("TEST_CONSUMER", ("test.consumer.>",)))
    consumer.add_consumer(DURABLE)
    await asyncio.wait_for(consumer.run(), timeout=10)  # ready without the producer's stream
    try:
        assert consumer.is_connected
        assert consumer.awaits_stream(DURABLE.durable)
        try:
            await consumer.js.consumer_info(DURABLE.stream, DURABLE.durable)
        except NotFoundError:
            pass
        else:
            raise AssertionError("the durable exists before its stream does")

        producer = EventBus(nats_server.url, "producer")
        producer.add_stream(PRODUCER_STREAM)
        await producer.run()
        await producer.publish("test.producer.first", b"first", headers={})

        async def durable_added() -> int:
            while True:
                try:
                    info = await consumer.js.consumer_info(DURABLE.stream, DURABLE.durable)
                except NotFoundError:
                    await asyncio.sleep(0.1)
                    continue
                return int(info.num_pending)

        assert await asyncio.wait_for(durable_added(), timeout=10) == 1
        assert not consumer.awaits_stream(DURABLE.durable)
        await producer.close()
    finally:
        await consumer.close()


async def apply_ping(session: AsyncSession, event: events_pb2.Ping, _ctx: EventContext) -> None:
    await session.execute(sa.insert(ping_effect).values(key=event.key))


async def test_a_consumer_waiting_for_its_stream_neither_fetches_nor_warns_and_reads_it_once_it_appears(
    backbone: Backbone, caplog: pytest.LogCaptureFixture
) -> None:
    late = uuid.uuid4().hex[:8]
    stream = StreamSpec(f"TEST_LATE_{late}", (f"test.late.{late}.>",))
    subject = f"test.late.{late}.ping"
    spec = ConsumerSpec(
        durable=f"late-reader-{late}",
        stream=stream.name,
        filter_subjects=stream.subjects,
        handlers=(EventHandler(events_pb2.Ping, apply_ping),),
    )
    bus = EventBus(backbone.nats.url, "consumer")  # declares no stream of its own
    consumer = EventConsumer(spec, backbone.database, bus, backbone.telemetry, backbone.settings)
    await bus.run()
    task = asyncio.create_task(consumer.run())
    try:
        with caplog.at_level(logging.INFO, logger="zhike_runtime.events"):
            await asyncio.sleep(3)  # six of the consumer's fetch intervals
        assert bus.awaits_stream(spec.durable)
        complaints = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert complaints == []
        assert [r.getMessage() for r in caplog.records].count("waiting for stream") == 1

        async with backbone.database.session() as session, session.begin():
            await add_to_outbox(session, [OutgoingEvent(subject, events_pb2.Ping(key=late))])
        producer = EventBus(backbone.nats.url, "producer")
        producer.add_stream(stream)
        await producer.run()
        try:
            relay = OutboxRelay(backbone.database, producer, backbone.telemetry)
            while await relay.publish_batch():
                pass
        finally:
            await producer.close()

        async def applied() -> bool:
            return await backbone.count(ping_effect, ping_effect.c.key == late) == 1

        await eventually(applied, timeout=15)
        assert not bus.awaits_stream(spec.durable)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
        await bus.close()
