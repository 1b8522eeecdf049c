"""The outbox and its relay: nothing lost, nothing phantom, duplicates absorbed by JetStream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from zhike.testing.v1 import events_pb2
from zhike_runtime.events import headers as h
from zhike_runtime.events.outbox import OutgoingEvent, add_to_outbox
from zhike_runtime.events.relay import OutboxRelay
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.services import eventually

from ..conftest import TEST_STREAM, Backbone, ping


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way catches it."""


async def stream_messages(backbone: Backbone) -> int:
    bus = backbone.bus("probe")
    await bus.run()
    info = await bus.js.stream_info(TEST_STREAM.name)
    await bus.close()
    return int(info.state.messages)


async def test_committed_events_are_published_with_their_id_type_and_trace_headers(
    backbone: Backbone,
) -> None:
    events = [ping(f"k{i}") for i in range(20)]
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, events)
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry, batch_size=8)
    published = 0
    while (n := await relay.publish_batch()) > 0:
        published += n
    assert published == 20
    assert await relay.backlog() == 0
    subscription = await bus.js.pull_subscribe(
        "zhike.testing.v1.ping", durable="probe", stream=TEST_STREAM.name
    )
    messages = await subscription.fetch(20, timeout=2)
    assert [m.headers[h.MSG_ID] for m in messages if m.headers] == [e.event_id for e in events]
    first = messages[0]
    assert first.headers is not None
    assert first.headers[h.EVENT_TYPE] == "zhike.testing.v1.Ping"
    assert first.headers[h.CONTENT_TYPE] == "application/x-protobuf"
    assert events_pb2.Ping.FromString(first.data).key == "k0"
    await bus.close()


async def test_a_transaction_that_fails_after_its_outbox_row_publishes_nothing(
    backbone: Backbone,
) -> None:

    async def doomed_transaction(key: str) -> None:
        event = ping(key)
        async with backbone.database.session() as session, session.begin():
            await add_to_outbox(session, [event])
            # A real constraint violation after the outbox insert: the same event id twice.
            await add_to_outbox(session, [event])

    for i in range(50):
        with pytest.raises(IntegrityError):
            await doomed_transaction(f"doomed-{i}")
    assert await backbone.count(outbox_event) == 0
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry)
    assert await relay.publish_batch() == 0
    await bus.close()
    assert await stream_messages(backbone) == 0


async def test_relay_crash_between_publish_and_mark_republishes_as_a_jetstream_duplicate(
    backbone: Backbone,
) -> None:
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, [ping(f"k{i}") for i in range(100)])
    bus = backbone.bus()
    await bus.run()

    async def crash(_acked: list[str]) -> None:
        raise SimulatedCrash

    crashing = OutboxRelay(backbone.database, bus, backbone.telemetry, after_publish=crash)
    with pytest.raises(SimulatedCrash):
        await crashing.publish_batch()
    assert await crashing.backlog() == 100  # published, but never marked sent

    restarted = OutboxRelay(backbone.database, bus, backbone.telemetry)
    assert await restarted.publish_batch() == 100
    assert restarted.duplicates_acknowledged == 100
    assert await restarted.backlog() == 0
    await bus.close()
    assert await stream_messages(backbone) == 100


async def test_events_wait_in_the_outbox_while_nats_is_down_and_drain_after(
    backbone: Backbone,
) -> None:
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry, poll_seconds=0.05)
    task = asyncio.create_task(relay.run())
    backbone.nats.kill()
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, [ping(f"k{i}") for i in range(30)])
    relay.notify()
    await asyncio.sleep(0.5)
    assert await relay.backlog() == 30
    backbone.nats.start()

    async def drained() -> bool:
        return await relay.backlog() == 0

    await eventually(drained, timeout=20)
    relay.stop()
    await task
    await bus.close()
    assert await stream_messages(backbone) == 30


async def test_sent_rows_are_deleted_after_their_retention(backbone: Backbone) -> None:
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, [ping("old")])
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry, retention_seconds=0)
    assert await relay.publish_batch() == 1
    assert await backbone.count(outbox_event) == 1
    await relay._housekeeping()
    assert await backbone.count(outbox_event, outbox_event.c.published_at.is_not(None)) == 0
    await bus.close()


async def test_events_keep_their_commit_order_on_the_stream(backbone: Backbone) -> None:
    async with backbone.database.session() as session:
        for i in range(30):
            async with session.begin():
                await add_to_outbox(session, [ping(f"k{i:02d}")])
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry)
    await relay.publish_batch()
    subscription = await bus.js.pull_subscribe(
        "zhike.testing.v1.ping", durable="order", stream=TEST_STREAM.name
    )
    keys = [events_pb2.Ping.FromString(m.data).key for m in await subscription.fetch(30, timeout=2)]
    assert keys == [f"k{i:02d}" for i in range(30)]
    await bus.close()


async def commit_one_and_wait_until_sent(backbone: Backbone, relay: OutboxRelay) -> None:
    """Commits an event, tells the running relay as a unit of work does, and waits until the
    outbox is empty."""
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, [ping("after the failure")])
    relay.notify()

    async def drained() -> bool:
        return await relay.backlog() == 0

    await eventually(drained, timeout=10)


async def test_a_round_failing_with_a_database_error_does_not_stop_the_relay(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Say a statement cancelled by the DBA, or a lock timeout while a migration holds the
    # outbox: not a lost connection, and the relay must still publish what comes after.
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry, poll_seconds=0.05)
    publish = OutboxRelay.publish_batch
    failed: list[bool] = []

    async def cancelled_once(self: OutboxRelay) -> int:
        if not failed:
            failed.append(True)
            raise DBAPIError("SELECT …", {}, Exception("canceling statement due to user request"))
        return await publish(self)

    monkeypatch.setattr(OutboxRelay, "publish_batch", cancelled_once)
    task = asyncio.create_task(relay.run())
    await commit_one_and_wait_until_sent(backbone, relay)
    assert failed == [True]
    relay.stop()
    await task
    await bus.close()


async def test_a_failure_that_lasts_is_logged_once_and_retried_less_and_less_often(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Say the outbox is locked by a migration for minutes: rounds every 50 ms would log 20 errors
    # a second and hammer the database with the same failing statement.
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry, poll_seconds=0.05)
    publish = OutboxRelay.publish_batch
    failing = True

    async def locked_while_failing(self: OutboxRelay) -> int:
        if failing:
            raise DBAPIError("SELECT …", {}, Exception("canceling statement due to lock timeout"))
        return await publish(self)

    monkeypatch.setattr(OutboxRelay, "publish_batch", locked_while_failing)
    with captured_json_logs() as lines:
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(2.0)
        # Waits of 0.1, 0.2, 0.4, 0.8 s fit in 2 s: five rounds at most, not forty.
        rounds_while_failing = relay.failed_rounds
        failing = False
        # A commit wakes the relay whatever its wait: the database takes writes again.
        await commit_one_and_wait_until_sent(backbone, relay)
        relay.stop()
        await task
    await bus.close()

    assert 2 <= rounds_while_failing <= 5
    logged = [json.loads(line) for line in lines if '"outbox relay' in line]
    assert [(entry["severity"], entry["message"]) for entry in logged] == [
        ("ERROR", "outbox relay round failed; will try again"),
        ("INFO", "outbox relay recovered"),
    ]
    assert logged[1]["failed_rounds"] == rounds_while_failing


async def test_events_nats_refuses_are_logged_once_for_the_round_and_retried_less_and_less_often(
    backbone: Backbone,
) -> None:
    # Say a stream is full: NATS refuses its events at every round. A line per event per round
    # at the poll interval would fill the logs, and the relay would poll as if all were well.
    bus = backbone.bus()
    await bus.run()
    relay = OutboxRelay(backbone.database, bus, backbone.telemetry, poll_seconds=0.05)
    # No stream takes this subject: each publish is refused (no responders).
    refused = [
        OutgoingEvent("zhike.nowhere.v1.ping", events_pb2.Ping(key=f"r{i}")) for i in range(3)
    ]
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, [*refused, ping("goes out")])
    with captured_json_logs() as lines:
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(2.0)
        rounds_while_refused = relay.failed_rounds
        relay.stop()
        await task
    await bus.close()

    # Waits of 0.1, 0.2, 0.4, 0.8 s fit in 2 s: five rounds at most, not forty.
    assert 2 <= rounds_while_refused <= 5
    logged = [json.loads(line) for line in lines if '"outbox relay' in line]
    assert [(entry["severity"], entry["message"]) for entry in logged] == [
        ("WARNING", "outbox relay: NATS refused events; they stay in the outbox"),
    ]
    assert (logged[0]["refused"], logged[0]["event_id"]) == (3, refused[0].event_id)
    assert not [line for line in lines if "publish failed" in line]
    assert await relay.backlog() == 3


async def test_two_relays_publish_the_events_in_their_commit_order(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not backbone.database.is_postgres:
        pytest.skip("SQLite has one process writing: one relay")
    async with backbone.database.session() as session:
        for i in range(4):
            async with session.begin():
                await add_to_outbox(session, [ping(f"v{i}")])
    bus = backbone.bus()
    await bus.run()
    first = OutboxRelay(backbone.database, bus, backbone.telemetry, batch_size=2)
    second = OutboxRelay(backbone.database, bus, backbone.telemetry, batch_size=2)
    publish = OutboxRelay._publish

    async def slowly_for_the_first(self: OutboxRelay, rows: Any) -> list[str]:
        if self is first:
            await asyncio.sleep(0.3)  # the first replica has the oldest rows, and is slower
        return await publish(self, rows)

    monkeypatch.setattr(OutboxRelay, "_publish", slowly_for_the_first)
    first_round = asyncio.create_task(first.publish_batch())
    await asyncio.sleep(0.1)
    assert await second.publish_batch() == 2
    assert await first_round == 2

    subscription = await bus.js.pull_subscribe(
        "zhike.testing.v1.ping", durable="two-relays", stream=TEST_STREAM.name
    )
    keys = [events_pb2.Ping.FromString(m.data).key for m in await subscription.fetch(4, timeout=2)]
    assert keys == ["v0", "v1", "v2", "v3"]
    await bus.close()
