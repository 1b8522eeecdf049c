"""Idempotent consumers: redeliveries change nothing, poison events go to the dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncSession

from zhike.testing.v1 import events_pb2
from zhike_runtime import cli
from zhike_runtime.errors import FieldViolation, InvalidArgument
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM, EventBus, dlq_subject, message_size
from zhike_runtime.events.consumer import (
    AfterCommitHook,
    ConsumerSpec,
    EventConsumer,
    EventContext,
    EventHandler,
    PermanentEventError,
)
from zhike_runtime.events.dead_letters import list_dead_letters, replay
from zhike_runtime.events.outbox import add_to_outbox
from zhike_runtime.events.relay import OutboxRelay
from zhike_runtime.events.schema import inbox_event
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.services import eventually

from ..conftest import PING_SUBJECT, TEST_STREAM, Backbone, ping, ping_effect

DURABLE = "tests-testing"


class SimulatedCrash(BaseException):
    """Stands for the consumer process dying between its commit and its ack."""


# Keys whose downstream is "broken" until a test repairs it.
BROKEN_DOWNSTREAM: set[str] = set()
# Attempts left that find the database unreachable, for the keys starting "during-an-outage".
OUTAGE = {"attempts": 0}


async def apply_ping(session: AsyncSession, event: events_pb2.Ping, _ctx: EventContext) -> None:
    if event.poison or event.key in BROKEN_DOWNSTREAM:
        raise RuntimeError(f"cannot apply {event.key}: downstream rejects it")
    if event.key.startswith("permanent"):
        raise PermanentEventError(f"{event.key} can never be applied")
    if event.key.startswith("refused-by-the-database"):
        # As PostgreSQL refuses a value too long for its column, or a NUL byte (SQLSTATE 22).
        raise DataError("INSERT INTO ping_effect", {}, ValueError("value too long"))
    if event.key.startswith("breaking-a-rule"):
        raise InvalidArgument([FieldViolation("key", "breaks a domain rule")])
    if event.key.startswith("during-an-outage") and OUTAGE["attempts"] > 0:
        OUTAGE["attempts"] -= 1
        raise ConnectionRefusedError(111, "Connect call failed")
    await session.execute(sa.insert(ping_effect).values(key=event.key))


SPEC = ConsumerSpec(
    durable=DURABLE,
    stream=TEST_STREAM.name,
    filter_subjects=(PING_SUBJECT,),
    handlers=(EventHandler(events_pb2.Ping, apply_ping),),
)


@asynccontextmanager
async def consuming(
    backbone: Backbone,
    after_commit: AfterCommitHook | None = None,
    *,
    spec: ConsumerSpec = SPEC,
    settings: ServiceSettings | None = None,
    on_commit: Callable[[], None] | None = None,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[tuple[EventBus, EventConsumer, asyncio.Task[None]]]:
    bus = backbone.bus("consumer")
    consumer = EventConsumer(
        spec,
        backbone.database,
        bus,
        telemetry or backbone.telemetry,
        settings or backbone.settings,
        on_commit=on_commit,
        after_commit=after_commit,
    )
    await bus.run()
    task = asyncio.create_task(consumer.run())
    try:
        yield bus, consumer, task
    finally:
        consumer.stop()
        if not task.done():
            await asyncio.wait_for(task, timeout=10)
        await bus.close()


async def publish_through_outbox(backbone: Backbone, events: list[events_pb2.Ping]) -> list[str]:
    outgoing = [ping(e.key, poison=e.poison) for e in events]
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, outgoing)
    bus = backbone.bus("producer")
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry)
    while await relay.publish_batch():
        pass
    await bus.close()
    return [e.event_id for e in outgoing]


async def effects(backbone: Backbone, key: str | None = None) -> int:
    if key is None:
        return await backbone.count(ping_effect)
    return await backbone.count(ping_effect, ping_effect.c.key == key)


async def test_the_same_event_delivered_twice_is_applied_once(backbone: Backbone) -> None:
    [event_id] = await publish_through_outbox(backbone, [events_pb2.Ping(key="once")])
    async with consuming(backbone) as (bus, _consumer, _task):

        async def applied() -> bool:
            return await effects(backbone, "once") == 1

        await eventually(applied)
        # The same event again, as a relay would republish it after the duplicate window: a new
        # JetStream message id, the same event id.
        headers = {
            h.MSG_ID: f"{event_id}-republished",
            h.EVENT_ID: event_id,
            h.EVENT_TYPE: "zhike.testing.v1.Ping",
        }
        await bus.js.publish(
            PING_SUBJECT, events_pb2.Ping(key="once").SerializeToString(), headers=headers
        )

        async def absorbed() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await eventually(absorbed)
    assert await effects(backbone, "once") == 1
    assert await backbone.count(inbox_event) == 1


async def test_a_consumer_killed_between_commit_and_ack_gets_a_redelivery_that_changes_nothing(
    backbone: Backbone,
) -> None:
    await publish_through_outbox(backbone, [events_pb2.Ping(key=f"k{i}") for i in range(5)])
    crashes: list[str] = []

    async def crash_once(context: EventContext) -> None:
        if not crashes:
            crashes.append(context.event_id)
            raise SimulatedCrash

    async with consuming(backbone, after_commit=crash_once) as (_bus, _consumer, task):
        with pytest.raises(SimulatedCrash):
            await task  # the consumer died with the first event committed but not acked
    assert await effects(backbone) == 1

    async with consuming(backbone) as (bus, consumer, _task):

        async def all_settled() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return (
                await effects(backbone) == 5 and info.num_ack_pending == 0 and info.num_pending == 0
            )

        await eventually(all_settled, timeout=15)
        # The crashed event did come back, and the inbox absorbed it.
        assert consumer.duplicates == 1
        assert consumer.applied == 4
    assert await effects(backbone) == 5
    assert {await effects(backbone, f"k{i}") for i in range(5)} == {1}
    assert await backbone.count(inbox_event) == 5


async def test_a_poison_event_is_dead_lettered_after_max_deliveries_and_the_rest_flow(
    backbone: Backbone,
) -> None:
    events = [events_pb2.Ping(key=f"good-{i}") for i in range(40)]
    events.insert(10, events_pb2.Ping(key="poison", poison=True))
    ids = await publish_through_outbox(backbone, events)
    poison_id = ids[10]
    async with consuming(backbone) as (bus, _consumer, _task):
        dead = await bus.js.pull_subscribe(
            dlq_subject(DURABLE), durable="dlq-reader", stream=DLQ_STREAM
        )

        async def good_ones_applied() -> bool:
            return await effects(backbone) == 40

        await eventually(good_ones_applied)
        [letter] = await dead.fetch(1, timeout=10)
        assert letter.headers is not None
        assert letter.headers[h.EVENT_ID] == poison_id
        assert letter.headers[h.ORIGINAL_SUBJECT] == PING_SUBJECT
        assert "downstream rejects it" in letter.headers[h.LAST_ERROR]
        assert letter.headers[h.DELIVERIES] == str(backbone.settings.consumer_max_deliver)
        assert events_pb2.Ping.FromString(letter.data).key == "poison"

        async def settled() -> bool:
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            return bool(info.num_ack_pending == 0 and info.num_pending == 0)

        await eventually(settled)
        stream = await bus.js.stream_info(DLQ_STREAM)
        assert stream.state.messages == 1
    assert await effects(backbone, "poison") == 0


async def test_an_event_whose_dead_letter_could_not_be_parked_is_parked_at_its_next_delivery(
    backbone: Backbone,
) -> None:
    await publish_through_outbox(backbone, [events_pb2.Ping(key="poison", poison=True)])
    async with consuming(backbone) as (bus, consumer, _task):
        publish = bus.publish
        refused: list[str] = []

        async def dead_letter_stream_down_once(subject: str, payload: bytes, **kw: Any) -> Any:
            if subject.startswith(dlq_subject("")) and not refused:
                refused.append(subject)
                raise TimeoutError("nats: timeout")
            return await publish(subject, payload, **kw)

        bus.publish = dead_letter_stream_down_once  # type: ignore[method-assign]

        async def parked() -> bool:
            return consumer.dead_lettered == 1

        await eventually(parked, timeout=20)
        stream = await bus.js.stream_info(DLQ_STREAM)
        assert (refused, stream.state.messages) == ([dlq_subject(DURABLE)], 1)


async def test_an_event_failing_while_the_database_is_unreachable_is_applied_once_it_is_back(
    backbone: Backbone,
) -> None:
    # More failed attempts than consumer_max_deliver, all for want of a database.
    OUTAGE["attempts"] = backbone.settings.consumer_max_deliver + 3
    await publish_through_outbox(backbone, [events_pb2.Ping(key="during-an-outage")])
    async with consuming(backbone) as (bus, consumer, _task):

        async def applied() -> bool:
            return await effects(backbone, "during-an-outage") == 1

        await eventually(applied, timeout=20)
        assert (OUTAGE["attempts"], consumer.dead_lettered) == (0, 0)
        stream = await bus.js.stream_info(DLQ_STREAM)
        assert stream.state.messages == 0


async def test_a_database_outage_is_told_once_with_its_retries_counted_not_a_line_per_retry(
    backbone: Backbone,
) -> None:
    # Through an outage every pending event is retried: thousands of lines a minute, one each.
    OUTAGE["attempts"] = 8
    keys = [f"during-an-outage-{i}" for i in range(3)]
    await publish_through_outbox(backbone, [events_pb2.Ping(key=key) for key in keys])
    with captured_json_logs() as lines:
        async with consuming(backbone):

            async def all_applied() -> bool:
                return [await effects(backbone, key) for key in keys] == [1, 1, 1]

            await eventually(all_applied, timeout=20)

    told = [json.loads(line) for line in lines if '"database ' in line]
    assert [(entry["message"], entry["retries"]) for entry in told] == [
        ("database unreachable; events wait and are retried", 1),
        # The other seven refused attempts, counted until an event applied again.
        ("database reachable again; events apply", 7),
    ]
    assert not [line for line in lines if "event failed; will retry" in line]


@pytest.mark.parametrize("key", ["permanent-1", "refused-by-the-database", "breaking-a-rule"])
async def test_a_permanent_error_goes_to_the_dead_letters_without_redelivery(
    backbone: Backbone, key: str
) -> None:
    await publish_through_outbox(backbone, [events_pb2.Ping(key=key), events_pb2.Ping(key="after")])
    async with consuming(backbone) as (bus, consumer, _task):
        dead = await bus.js.pull_subscribe(
            dlq_subject(DURABLE), durable="dlq-reader", stream=DLQ_STREAM
        )
        [letter] = await dead.fetch(1, timeout=10)
        assert letter.headers is not None
        assert letter.headers[h.DELIVERIES] == "1"

        async def after_applied() -> bool:
            return await effects(backbone, "after") == 1

        await eventually(after_applied)
        assert consumer.dead_lettered == 1
        assert consumer.duplicates == 0
        info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
        assert info.delivered.stream_seq == 2
        assert info.num_redelivered == 0


async def test_a_payload_that_does_not_decode_is_dead_lettered(backbone: Backbone) -> None:
    async with consuming(backbone) as (bus, _consumer, _task):
        await bus.js.publish(
            PING_SUBJECT,
            b"\xff\xff\xff not protobuf",
            headers={
                h.MSG_ID: "garbage-1",
                h.EVENT_ID: "garbage-1",
                h.EVENT_TYPE: "zhike.testing.v1.Ping",
            },
        )
        dead = await bus.js.pull_subscribe(
            dlq_subject(DURABLE), durable="dlq-reader", stream=DLQ_STREAM
        )
        [letter] = await dead.fetch(1, timeout=10)
        assert letter.headers is not None
        assert "not a zhike.testing.v1.Ping" in letter.headers[h.LAST_ERROR]
    assert await effects(backbone) == 0


async def test_an_event_too_large_to_park_with_its_headers_is_parked_without_its_payload(
    backbone: Backbone,
) -> None:
    # Left for redelivery instead, it would be lost once its deliveries ran out.
    async with consuming(backbone) as (bus, consumer, _task):
        assert bus.max_payload is not None
        headers = {
            h.MSG_ID: "large-1",
            h.EVENT_ID: "large-1",
            h.EVENT_TYPE: "zhike.testing.v1.Ping",
        }
        # 50 bytes short of the limit: it fits alone, not with a letter's headers.
        room = bus.max_payload - message_size(b"", headers) - 50
        event = events_pb2.Ping(key="refused-by-the-database")
        event.key += "x" * (room - event.ByteSize())
        over = message_size(event.SerializeToString(), headers) - (bus.max_payload - 50)
        event.key = event.key[: len(event.key) - over]  # the key's length took bytes of its own
        assert message_size(event.SerializeToString(), headers) == bus.max_payload - 50
        ack = await bus.js.publish(PING_SUBJECT, event.SerializeToString(), headers=headers)
        dead = await bus.js.pull_subscribe(
            dlq_subject(DURABLE), durable="dlq-reader", stream=DLQ_STREAM
        )
        [letter] = await dead.fetch(1, timeout=10)

        assert letter.data == b""
        assert letter.headers is not None
        assert letter.headers[h.PAYLOAD_OMITTED] == str(event.ByteSize())
        assert letter.headers[h.ORIGINAL_SEQUENCE] == str(ack.seq)

        # Counted once the letter's publish is acknowledged, which may come after it is read.
        async def counted() -> bool:
            return consumer.dead_lettered == 1

        await eventually(counted, timeout=5)
        [parked] = await list_dead_letters(bus.js, DURABLE)
        # Replayed empty, the event would be lost for good: it is taken from its stream.
        result = await replay(bus.js, [parked])
        assert (result.replayed, result.skipped) == (1, [])
        replayed = await bus.js.get_msg(TEST_STREAM.name, seq=ack.seq + 1)
        assert replayed.data == event.SerializeToString()


async def test_two_consumer_instances_share_the_work_and_apply_each_event_once(
    backbone: Backbone,
) -> None:
    await publish_through_outbox(backbone, [events_pb2.Ping(key=f"k{i}") for i in range(200)])
    async with consuming(backbone), consuming(backbone):

        async def all_applied() -> bool:
            return await effects(backbone) == 200

        await eventually(all_applied, timeout=20)
    assert await backbone.count(inbox_event) == 200
    distinct = await backbone.count(ping_effect)
    assert distinct == 200


async def test_a_dead_letter_replayed_after_the_fix_is_applied_once(backbone: Backbone) -> None:
    BROKEN_DOWNSTREAM.add("flaky")
    try:
        [event_id] = await publish_through_outbox(backbone, [events_pb2.Ping(key="flaky")])
        async with consuming(backbone) as (bus, consumer, _task):

            async def dead_lettered() -> bool:
                return consumer.dead_lettered == 1

            await eventually(dead_lettered, timeout=15)
            BROKEN_DOWNSTREAM.discard("flaky")  # the fix is deployed

            listed = await asyncio.to_thread(
                run_cli, ["dlq", "list", "--nats", backbone.nats.url, "--consumer", DURABLE]
            )
            assert event_id in listed
            assert "1 dead letter(s)" in listed
            replayed = await asyncio.to_thread(
                run_cli, ["dlq", "replay", "--nats", backbone.nats.url, "--consumer", DURABLE]
            )
            assert "replayed 1" in replayed

            async def applied() -> bool:
                return await effects(backbone, "flaky") == 1

            await eventually(applied)
            again = await asyncio.to_thread(
                run_cli, ["dlq", "replay", "--nats", backbone.nats.url, "--consumer", DURABLE]
            )
            assert "replayed 0" in again
            assert (await bus.js.stream_info(DLQ_STREAM)).state.messages == 0
        assert await effects(backbone, "flaky") == 1
    finally:
        BROKEN_DOWNSTREAM.discard("flaky")


def run_cli(argv: list[str]) -> str:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert cli.main(argv) == 0
    return output.getvalue()
