"""A service that consumes another's stream is ready before that stream exists (two services
that consume each other's streams would otherwise each wait for the other), and its durable is
added, from the stream's first event, as soon as the producer declares the stream."""

from __future__ import annotations

import asyncio

from nats.js.errors import NotFoundError

from zhike_runtime.events.bus import ConsumerDeclaration, EventBus, StreamSpec
from zhike_runtime.testing.processes import NatsServer

PRODUCER_STREAM = StreamSpec("TEST_PRODUCER", ("test.producer.>",))
DURABLE = ConsumerDeclaration(
    durable="consumer-producer",
    stream="TEST_PRODUCER",
    filter_subjects=("test.producer.>",),
    max_deliver=3,
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
        await producer.close()
    finally:
        await consumer.close()
