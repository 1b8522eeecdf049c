"""RELIABILITY R6 (b): a handler slower than AckWait keeps its message (the consumer sends
in_progress), so no other instance gets it and nothing is applied twice."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike.testing.v1 import events_pb2
from zhike_runtime.events.consumer import (
    KEEP_ALIVE_LIMIT,
    ConsumerSpec,
    EventContext,
    EventHandler,
)
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.services import eventually

from ..conftest import PING_SUBJECT, TEST_STREAM, Backbone, fast_settings, ping_effect
from .test_consumer import DURABLE, consuming, effects, publish_through_outbox

ACK_WAIT = 1.0
HANDLER_SECONDS = 3 * ACK_WAIT
# A handler that "hangs": longer than the consumer keeps a message alive (at a short AckWait).
HUNG_ACK_WAIT = 0.3
HUNG_SECONDS = (KEEP_ALIVE_LIMIT + 6) * HUNG_ACK_WAIT

# Every delivery the handler saw, by key: (delivery number, ...).
seen: dict[str, list[int]] = {}


async def slow_when_asked(
    session: AsyncSession, event: events_pb2.Ping, context: EventContext
) -> None:
    seen.setdefault(event.key, []).append(context.delivery)
    if event.key.startswith("slow"):
        await asyncio.sleep(HANDLER_SECONDS)
    if event.key.startswith("hung") and context.delivery == 1:
        await asyncio.sleep(HUNG_SECONDS)
    await session.execute(sa.insert(ping_effect).values(key=event.key))


SLOW = ConsumerSpec(
    durable=DURABLE,
    stream=TEST_STREAM.name,
    filter_subjects=(PING_SUBJECT,),
    handlers=(EventHandler(events_pb2.Ping, slow_when_asked),),
)


async def test_a_handler_slower_than_ack_wait_gets_no_redelivery(backbone: Backbone) -> None:
    seen.clear()
    settings = fast_settings(
        backbone.database.url, backbone.nats.url, consumer_ack_wait_seconds=ACK_WAIT
    )
    # The slow one first: the events fetched with it wait their turn longer than AckWait too.
    keys = ["slow-1", "quick-1", "quick-2"]
    await publish_through_outbox(backbone, [events_pb2.Ping(key=k) for k in keys])
    # Two instances: an expired AckWait would hand the message in work to the idle one.
    async with (
        consuming(backbone, spec=SLOW, settings=settings) as (bus, first, _),
        consuming(backbone, spec=SLOW, settings=settings) as (_bus, second, _task),
    ):

        async def all_applied() -> bool:
            return await effects(backbone) == len(keys)

        await eventually(all_applied, timeout=HANDLER_SECONDS * 4)
        await asyncio.sleep(2 * ACK_WAIT)  # time for a redelivery to show, had there been one
        info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
        assert info.num_redelivered == 0
        assert info.num_ack_pending == 0
        assert first.duplicates + second.duplicates == 0
    assert seen == {key: [1] for key in keys}
    assert {await effects(backbone, key) for key in keys} == {1}


async def test_a_handler_that_hangs_loses_its_message_to_another_instance_after_the_limit(
    backbone: Backbone,
) -> None:
    seen.clear()
    settings = fast_settings(
        backbone.database.url, backbone.nats.url, consumer_ack_wait_seconds=HUNG_ACK_WAIT
    )
    await publish_through_outbox(backbone, [events_pb2.Ping(key="hung-1")])
    with captured_json_logs() as lines:
        async with (
            consuming(backbone, spec=SLOW, settings=settings) as (bus, first, _),
            consuming(backbone, spec=SLOW, settings=settings) as (_bus, second, _task),
        ):

            async def settled() -> bool:
                info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
                done = first.applied + first.duplicates + second.applied + second.duplicates
                return done == 2 and info.num_ack_pending == 0

            await eventually(settled, timeout=HUNG_SECONDS * 3)
            # Redelivered once the limit passed, and applied once: the second copy waited on the
            # hung transaction's inbox row and found it there.
            assert first.duplicates + second.duplicates == 1
            assert first.applied + second.applied == 1
    assert seen["hung-1"] == [1]
    assert await effects(backbone, "hung-1") == 1
    assert [line for line in lines if "handling has taken too long" in line] != []
