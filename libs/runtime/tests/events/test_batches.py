"""Batches (ConsumerSpec.batch_handler): the new events of one fetch are applied in one
transaction, each still exactly once through the inbox; a batch that fails is applied one event
at a time, so a poison event is retried and dead-lettered alone (RELIABILITY R5)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike.testing.v1 import events_pb2
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM, dlq_subject
from zhike_runtime.events.consumer import (
    DEFER_LIMIT,
    ConsumerSpec,
    EventConsumer,
    EventContext,
    EventHandler,
    ReceivedEvent,
    apply_in_turn,
)
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.events.schema import inbox_event, outbox_event
from zhike_runtime.testing.services import eventually
from zhike_runtime.unit_of_work import UnitOfWork

from ..conftest import PING_SUBJECT, TEST_STREAM, Backbone, ping_effect
from .test_consumer import DURABLE, consuming, effects, publish_through_outbox

ECHO_SUBJECT = "zhike.testing.v1.echo"

# What the handlers saw, reset by each test: the size of each batch and the unit it ran in, and
# every delivery number of each key.
batches: list[tuple[int, set[int]]] = []
deliveries: dict[str, list[int]] = {}


async def apply_and_echo(
    session: AsyncSession, event: events_pb2.Ping, context: EventContext
) -> None:
    """The effect, and an outgoing event staged in the same transaction."""
    deliveries.setdefault(event.key, []).append(context.delivery)
    if event.poison:
        raise RuntimeError(f"cannot apply {event.key}: downstream rejects it")
    await session.execute(sa.insert(ping_effect).values(key=event.key))
    context.unit.stage(OutgoingEvent(ECHO_SUBJECT, events_pb2.Ping(key=f"echo-{event.key}")))


async def recorded_batch(unit: UnitOfWork, events: Sequence[ReceivedEvent]) -> None:
    batches.append((len(events), {id(event.context.unit) for event in events} | {id(unit)}))
    await apply_in_turn(unit, events)


BATCHED = ConsumerSpec(
    durable=DURABLE,
    stream=TEST_STREAM.name,
    filter_subjects=(PING_SUBJECT,),
    handlers=(EventHandler(events_pb2.Ping, apply_and_echo),),
    batch_handler=recorded_batch,
)


def reset() -> None:
    batches.clear()
    deliveries.clear()


async def echoes(backbone: Backbone) -> int:
    return await backbone.count(outbox_event, outbox_event.c.subject == ECHO_SUBJECT)


async def test_the_events_of_a_fetch_are_applied_in_one_transaction_each_once(
    backbone: Backbone,
) -> None:
    reset()
    count = 150
    await publish_through_outbox(backbone, [events_pb2.Ping(key=f"k{i}") for i in range(count)])
    wakes: list[int] = []
    async with consuming(backbone, spec=BATCHED, on_commit=lambda: wakes.append(1)) as (
        bus,
        consumer,
        _task,
    ):

        async def settled() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return consumer.applied == count and info.num_ack_pending == 0

        await eventually(settled, timeout=20)
        assert consumer.batches_failed == 0
    assert max(size for size, _units in batches) > 1
    # Every event of a batch was handed the batch's own unit: one transaction per batch.
    assert all(len(units) == 1 for _size, units in batches)
    assert sum(size for size, _units in batches) == count
    assert await effects(backbone) == count
    assert await backbone.count(inbox_event) == count
    # Staged in the consumer's transaction; the relay is woken once per commit.
    assert await echoes(backbone) == count
    alone = count - sum(size for size, _units in batches)  # fetches of a single message
    assert len(wakes) == len(batches) + alone


async def test_events_already_in_the_inbox_or_twice_in_a_fetch_are_applied_once(
    backbone: Backbone,
) -> None:
    reset()
    ids = await publish_through_outbox(backbone, [events_pb2.Ping(key=f"k{i}") for i in range(10)])
    # k0..k2 applied before (their effects are already there), k3 republished after the
    # duplicate window: a second message with the same event id in the same fetch.
    async with backbone.database.session() as session, session.begin():
        for key, event_id in zip(("k0", "k1", "k2"), ids, strict=False):
            await session.execute(sa.insert(ping_effect).values(key=key))
            await session.execute(
                sa.insert(inbox_event).values(
                    consumer=DURABLE,
                    event_id=event_id,
                    event_type="zhike.testing.v1.Ping",
                    processed_at=sa.func.now(),
                )
            )
    bus = backbone.bus("republisher")
    await bus.run()
    await bus.js.publish(
        PING_SUBJECT,
        events_pb2.Ping(key="k3").SerializeToString(),
        headers={h.MSG_ID: "k3-again", h.EVENT_ID: ids[3], h.EVENT_TYPE: "zhike.testing.v1.Ping"},
    )
    await bus.close()
    async with consuming(backbone, spec=BATCHED) as (bus, consumer, _task):

        async def settled() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return consumer.applied == 7 and info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(settled)
        assert consumer.duplicates == 4
    assert batches == [(7, batches[0][1])]
    assert {await effects(backbone, f"k{i}") for i in range(10)} == {1}
    assert await backbone.count(inbox_event) == 10
    assert await echoes(backbone) == 7


async def test_a_poison_event_in_a_batch_is_retried_and_dead_lettered_alone(
    backbone: Backbone,
) -> None:
    reset()
    good = [events_pb2.Ping(key=f"good-{i}") for i in range(100)]
    events = [*good[:50], events_pb2.Ping(key="poison", poison=True), *good[50:]]
    ids = await publish_through_outbox(backbone, events)
    max_deliver = backbone.settings.consumer_max_deliver
    async with consuming(backbone, spec=BATCHED) as (bus, consumer, _task):
        dead = await bus.js.pull_subscribe(
            dlq_subject(DURABLE), durable="dlq-reader", stream=DLQ_STREAM
        )
        [letter] = await dead.fetch(1, timeout=20)
        assert letter.headers is not None
        assert letter.headers[h.EVENT_ID] == ids[50]
        assert letter.headers[h.DELIVERIES] == str(max_deliver)
        assert "downstream rejects it" in letter.headers[h.LAST_ERROR]

        async def settled() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await eventually(settled)
        assert consumer.batches_failed >= 1
        assert consumer.dead_lettered == 1
        assert consumer.applied == 100
        assert (await bus.js.stream_info(DLQ_STREAM)).state.messages == 1
    # Exactly max_deliver deliveries of the poison (each tried in its batch, then alone).
    assert sorted(set(deliveries["poison"])) == list(range(1, max_deliver + 1))
    assert {await effects(backbone, e.key) for e in good} == {1}
    assert await effects(backbone, "poison") == 0
    # The failed batches rolled back whole: no phantom outgoing event from them.
    assert await echoes(backbone) == 100


async def test_a_malformed_message_in_a_fetch_is_dead_lettered_and_the_batch_applied(
    backbone: Backbone,
) -> None:
    reset()
    await publish_through_outbox(backbone, [events_pb2.Ping(key="a"), events_pb2.Ping(key="b")])
    bus = backbone.bus("garbage")
    await bus.run()
    await bus.js.publish(
        PING_SUBJECT,
        b"\xff\xff not protobuf",
        headers={h.MSG_ID: "g-1", h.EVENT_ID: "g-1", h.EVENT_TYPE: "zhike.testing.v1.Ping"},
    )
    await bus.close()
    await publish_through_outbox(backbone, [events_pb2.Ping(key="c")])
    async with consuming(backbone, spec=BATCHED) as (bus, consumer, _task):
        dead = await bus.js.pull_subscribe(
            dlq_subject(DURABLE), durable="dlq-reader", stream=DLQ_STREAM
        )
        [letter] = await dead.fetch(1, timeout=10)
        assert letter.headers is not None
        assert letter.headers[h.EVENT_ID] == "g-1"

        async def applied() -> bool:
            return consumer.applied == 3

        await eventually(applied)
        assert consumer.batches_failed == 0
    assert [size for size, _units in batches] == [3]
    assert await effects(backbone) == 3


# Per key, the may_defer of each batch the key was handed to.
offered: dict[str, list[bool]] = {}


async def leaving_out_busy_keys(
    unit: UnitOfWork, events: Sequence[ReceivedEvent]
) -> list[ReceivedEvent]:
    """Leaves "busy-*" for later whenever it may, "once" the first time only."""
    left: list[ReceivedEvent] = []
    taken: list[ReceivedEvent] = []
    for event in events:
        key = cast(events_pb2.Ping, event.message).key
        offered.setdefault(key, []).append(event.may_defer)
        busy = key.startswith("busy-") or (key == "once" and len(offered[key]) == 1)
        (left if busy and event.may_defer else taken).append(event)
    await apply_in_turn(unit, taken)
    return left


async def test_an_event_left_for_later_is_applied_once_in_a_later_batch_and_at_last_must_be(
    backbone: Backbone,
) -> None:
    reset()
    offered.clear()
    keys = [f"k{i}" for i in range(20)] + ["once", "busy-1", "busy-2"]
    await publish_through_outbox(backbone, [events_pb2.Ping(key=key) for key in keys])
    spec = replace(BATCHED, batch_handler=leaving_out_busy_keys)
    async with consuming(backbone, spec=spec) as (bus, consumer, _task):

        async def settled() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return consumer.applied == len(keys) and info.num_ack_pending == 0

        await eventually(settled, timeout=20)
        # "once" left out once; each "busy-" DEFER_LIMIT times, then handed over as a must.
        assert consumer.deferred == 1 + 2 * DEFER_LIMIT
        assert consumer.batches_failed == 0
    assert offered["once"] == [True, True]
    assert offered["busy-1"] == [True] * DEFER_LIMIT + [False]
    assert offered["busy-2"] == [True] * DEFER_LIMIT + [False]
    # Kept in hand, never redelivered by JetStream; applied, recorded and echoed once each.
    assert deliveries["busy-1"] == [1]
    assert {await effects(backbone, key) for key in keys} == {1}
    assert await backbone.count(inbox_event) == len(keys)
    assert await echoes(backbone) == len(keys)


async def test_a_batch_handler_that_leaves_out_an_event_it_must_apply_fails_the_batch(
    backbone: Backbone,
) -> None:
    reset()

    async def leaving_out_everything(
        unit: UnitOfWork, events: Sequence[ReceivedEvent]
    ) -> Sequence[ReceivedEvent]:
        return [event for event in events if not event.may_defer] or events

    keys = ["a", "b", "c"]
    await publish_through_outbox(backbone, [events_pb2.Ping(key=key) for key in keys])
    spec = replace(BATCHED, batch_handler=leaving_out_everything)
    async with consuming(backbone, spec=spec) as (_bus, consumer, _task):

        async def applied() -> bool:
            return consumer.applied == len(keys)

        # Left out DEFER_LIMIT times, then refused as a must: applied one by one instead.
        await eventually(applied, timeout=20)
        assert consumer.batches_failed == 1
    assert {await effects(backbone, key) for key in keys} == {1}
    assert await backbone.count(inbox_event) == len(keys)


async def test_events_left_for_later_are_handed_back_when_the_consumer_stops(
    backbone: Backbone,
) -> None:
    reset()
    keys = ["a", "b", "busy-1", "busy-2"]
    await publish_through_outbox(backbone, [events_pb2.Ping(key=key) for key in keys])
    stopping: list[EventConsumer] = []

    async def leaving_busy_and_stopping(
        unit: UnitOfWork, events: Sequence[ReceivedEvent]
    ) -> list[ReceivedEvent]:
        left = [e for e in events if cast(events_pb2.Ping, e.message).key.startswith("busy-")]
        await apply_in_turn(unit, [e for e in events if e not in left])
        stopping[0].stop()  # the replica is being shut down while it holds them
        return left

    spec = replace(BATCHED, batch_handler=leaving_busy_and_stopping)
    # Redelivered after AckWait only if nobody handed them back: longer than the wait below.
    patient = backbone.settings.model_copy(update={"consumer_ack_wait_seconds": 30.0})
    async with consuming(backbone, spec=spec, settings=patient) as (_bus, first, task):
        stopping.append(first)
        await asyncio.wait_for(task, timeout=20)
        assert (first.applied, first.deferred) == (2, 2)
    # NAKed at the stop, not left to AckWait: the next replica applies them at once.
    async with consuming(backbone, spec=BATCHED, settings=patient) as (bus, second, _task):

        async def settled() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return second.applied == 2 and info.num_ack_pending == 0

        await eventually(settled, timeout=10)
    assert {await effects(backbone, key) for key in keys} == {1}
    assert await backbone.count(inbox_event) == len(keys)
