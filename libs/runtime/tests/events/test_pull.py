"""Fetches from a durable pull consumer (`PullConsumer`), against a real nats-server.

nats-py's own fetch waits out its whole timeout when a status or a message meant for an earlier
pull request reaches it (nats-io/nats.py#933, #986); these tests build those situations on
purpose: a request left waiting on the server, and a status arriving for another request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import Error as JetStreamError

from zhike_runtime.events.pull import PullConsumer
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import eventually

# A fetch's timeout far longer than any test waits for it: a fetch that returns within
# GUARD seconds did not wait its timeout out.
LONG_TIMEOUT = 30.0
GUARD = 10.0

_names = itertools.count()


@dataclass
class Stream:
    client: Client
    js: JetStreamContext
    name: str
    subject: str
    durable: str

    async def publish(self, *payloads: bytes) -> None:
        for payload in payloads:
            await self.js.publish(self.subject, payload)

    async def abandoned_request(self, consumer: PullConsumer, request: dict[str, object]) -> None:
        """A pull request from `consumer`'s inbox that no fetch waits for, as one a fetch gave up
        on would be."""
        await self.client.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.name}.{self.durable}",
            json.dumps(request).encode(),
            reply=f"{consumer.inbox}.abandoned",
        )
        await self.client.flush()


@pytest.fixture
async def stream(nats_server: NatsServer) -> AsyncIterator[Stream]:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    n = next(_names)
    name, subject, durable = f"PULL_{n}", f"zhike.pull.{n}", f"pull-{n}"
    await js.add_stream(StreamConfig(name=name, subjects=[subject]))
    await js.add_consumer(
        name, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30)
    )
    yield Stream(client, js, name, subject, durable)
    await js.delete_stream(name)
    await client.close()


@pytest.fixture
async def consumer(stream: Stream) -> AsyncIterator[PullConsumer]:
    consumer = PullConsumer(stream.client, stream.name, stream.durable)
    await consumer.start()
    yield consumer
    await consumer.close()


async def test_a_fetch_hands_out_at_most_its_batch_in_order_and_the_rest_to_the_next_fetches(
    stream: Stream, consumer: PullConsumer
) -> None:
    sent = [f"m{i}".encode() for i in range(25)]
    await stream.publish(*sent)
    received: list[list[bytes]] = []
    for _ in range(3):
        messages = await consumer.fetch(10, timeout=2)
        received.append([message.data for message in messages])
        for message in messages:
            await message.ack_sync()
    assert received == [sent[:10], sent[10:20], sent[20:]]
    info = await stream.js.consumer_info(stream.name, stream.durable)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_a_fetch_with_nothing_to_fetch_returns_no_messages_when_its_timeout_ends(
    consumer: PullConsumer,
) -> None:
    assert await consumer.fetch(10, timeout=0.3) == []


async def fetched_while_waiting(
    stream: Stream,
    consumer: PullConsumer,
    payload: bytes,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> list[bytes]:
    """Starts a fetch with a long timeout and lets it wait; runs `meanwhile` (the fetch still
    waiting after it), publishes `payload`, and returns what the fetch returned, failing if it
    took GUARD seconds."""
    fetching = asyncio.create_task(consumer.fetch(10, timeout=LONG_TIMEOUT))
    await asyncio.sleep(0.2)
    if meanwhile is not None:
        await meanwhile()
        await asyncio.sleep(0.2)
        assert not fetching.done()
    await stream.publish(payload)
    return [message.data for message in await asyncio.wait_for(fetching, GUARD)]


async def test_a_fetch_returns_a_message_published_while_it_waits_without_waiting_to_fill_its_batch(
    stream: Stream, consumer: PullConsumer
) -> None:
    assert await fetched_while_waiting(stream, consumer, b"late") == [b"late"]


async def test_a_message_an_abandoned_pull_request_receives_is_returned_by_the_waiting_fetch(
    stream: Stream, consumer: PullConsumer
) -> None:
    # Older than the fetch's own request, so the server hands the new message to it.
    await stream.abandoned_request(consumer, {"batch": 5, "expires": int(60e9)})
    payload = b"taken by the abandoned request"
    assert await fetched_while_waiting(stream, consumer, payload) == [payload]


async def test_a_status_for_another_pull_request_does_not_end_a_waiting_fetch(
    stream: Stream, consumer: PullConsumer
) -> None:
    async def stray_status() -> None:
        # Nothing to deliver: JetStream answers this request at once with 404 No Messages.
        await stream.abandoned_request(consumer, {"batch": 1, "no_wait": True})

    payload = b"after the stray status"
    assert await fetched_while_waiting(stream, consumer, payload, stray_status) == [payload]


async def test_messages_that_arrived_but_were_not_fetched_are_handed_back_when_it_closes(
    stream: Stream,
) -> None:
    closing = PullConsumer(stream.client, stream.name, stream.durable)
    await closing.start()
    await stream.publish(b"a", b"b", b"c")
    await stream.abandoned_request(closing, {"batch": 3, "no_wait": True})

    async def delivered() -> bool:
        info = await stream.js.consumer_info(stream.name, stream.durable)
        return bool(info.num_ack_pending == 3)

    await eventually(delivered)
    await closing.close()
    # The consumer's AckWait is 30 s: without the hand-back, none would come back in time.
    successor = PullConsumer(stream.client, stream.name, stream.durable)
    await successor.start()
    try:
        messages = await successor.fetch(10, timeout=5)
    finally:
        await successor.close()
    assert [(m.data, m.metadata.num_delivered) for m in messages] == [
        (b"a", 2),
        (b"b", 2),
        (b"c", 2),
    ]


async def test_a_fetch_cancelled_in_the_turn_its_message_arrives_is_cancelled_and_keeps_it(
    stream: Stream, consumer: PullConsumer
) -> None:
    # A stopping consumer cancels its fetch once: a fetch that let this go (Python 3.11's
    # wait_for does, when the message lands in the same turn) would keep the service running.
    fetching = asyncio.create_task(consumer.fetch(10, timeout=LONG_TIMEOUT))
    await asyncio.sleep(0.2)
    arriving = Msg(_client=stream.client, subject=f"{consumer.inbox}.0", data=b"m")
    await consumer._receive(arriving)  # as the subscription delivers it, in this very turn
    fetching.cancel()

    with pytest.raises(asyncio.CancelledError):
        await fetching
    assert [message.data for message in await consumer.fetch(10, timeout=0.5)] == [b"m"]


async def test_a_fetch_from_a_consumer_that_does_not_exist_raises_a_jetstream_error(
    stream: Stream,
) -> None:
    missing = PullConsumer(stream.client, stream.name, "no-such-durable")
    await missing.start()
    try:
        with pytest.raises(JetStreamError):
            await missing.fetch(10, timeout=2)
    finally:
        await missing.close()


async def test_a_fetch_waiting_when_its_consumer_is_deleted_raises_a_jetstream_error(
    stream: Stream, consumer: PullConsumer
) -> None:
    fetching = asyncio.create_task(consumer.fetch(10, timeout=LONG_TIMEOUT))
    await asyncio.sleep(0.2)
    await stream.js.delete_consumer(stream.name, stream.durable)
    with pytest.raises(JetStreamError, match="409"):
        await asyncio.wait_for(fetching, GUARD)


async def test_a_fetch_refuses_an_empty_batch_and_a_timeout_that_is_not_positive(
    consumer: PullConsumer,
) -> None:
    with pytest.raises(ValueError, match="batch of at least 1"):
        await consumer.fetch(0, timeout=1)
    with pytest.raises(ValueError, match="positive timeout"):
        await consumer.fetch(1, timeout=0)
