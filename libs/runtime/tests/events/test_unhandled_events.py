"""An event type the consumer has no handler for is recorded, counted once and logged without its
payload, never acked silently; a message that can never be recorded goes to the dead letters."""

from __future__ import annotations

import sqlalchemy as sa
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from zhike.testing.v1 import events_pb2
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM, dlq_subject
from zhike_runtime.events.schema import inbox_event
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.services import eventually

from ..conftest import PING_SUBJECT, TEST_STREAM, Backbone
from .test_consumer import DURABLE, consuming, effects

UNKNOWN_TYPE = "zhike.testing.v1.Pong"
# What the unknown event carries: personal data that must not reach a log line.
PHONE = "13671829305"


def unhandled_counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    """zhike.events.unhandled by (consumer, event_type), from a real metric collection."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (str(point.attributes["consumer"]), str(point.attributes.get("event_type", ""))): int(
            point.value
        )
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "zhike.events.unhandled"
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint) and point.attributes is not None
    }


async def test_an_event_type_without_a_handler_is_recorded_counted_once_and_logged_without_payload(
    backbone: Backbone,
) -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry("test", metric_readers=[reader])
    payload = f"phone {PHONE}".encode()
    with captured_json_logs() as lines:
        async with consuming(backbone, telemetry=telemetry) as (bus, consumer, _task):
            assert unhandled_counts(reader) == {(DURABLE, ""): 0}  # exported from the start
            for msg_id in ("pong-1", "pong-1-republished"):  # the second: after the dup window
                await bus.js.publish(
                    PING_SUBJECT,
                    payload,
                    headers={h.MSG_ID: msg_id, h.EVENT_ID: "pong-1", h.EVENT_TYPE: UNKNOWN_TYPE},
                )
            await bus.js.publish(
                PING_SUBJECT,
                events_pb2.Ping(key="after").SerializeToString(),
                headers={
                    h.MSG_ID: "ping-1",
                    h.EVENT_ID: "ping-1",
                    h.EVENT_TYPE: "zhike.testing.v1.Ping",
                },
            )

            async def settled() -> bool:
                info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
                return consumer.applied == 1 and info.num_pending == 0 and info.num_ack_pending == 0

            await eventually(settled)
            assert consumer.unhandled == 1
            assert consumer.duplicates == 1  # the republished copy is not counted again
            info = await bus.js.consumer_info(TEST_STREAM.name, DURABLE)
            assert info.num_redelivered == 0
    assert unhandled_counts(reader) == {(DURABLE, ""): 0, (DURABLE, UNKNOWN_TYPE): 1}
    async with backbone.database.session() as session:
        rows = (
            await session.execute(sa.select(inbox_event.c.event_id, inbox_event.c.event_type))
        ).all()
    assert sorted(tuple(row) for row in rows) == [
        ("ping-1", "zhike.testing.v1.Ping"),
        ("pong-1", UNKNOWN_TYPE),
    ]
    [logged] = [line for line in lines if "event type without a handler" in line]
    assert '"event_id": "pong-1"' in logged
    assert UNKNOWN_TYPE in logged
    assert [line for line in lines if PHONE in line] == []
    assert await effects(backbone, "after") == 1


async def test_a_message_without_an_event_type_is_dead_lettered_not_dropped(
    backbone: Backbone,
) -> None:
    async with consuming(backbone) as (bus, consumer, _task):
        await bus.js.publish(PING_SUBJECT, b"?", headers={h.MSG_ID: "typeless-1"})
        dead = await bus.js.pull_subscribe(
            dlq_subject(DURABLE), durable="dlq-reader", stream=DLQ_STREAM
        )
        [letter] = await dead.fetch(1, timeout=10)
        assert letter.headers is not None
        assert (
            letter.headers[h.LAST_ERROR] == "PermanentEventError: message has no event type header"
        )
        assert consumer.unhandled == 0
    assert await backbone.count(inbox_event) == 0


async def test_past_twenty_unhandled_event_types_the_rest_count_under_other(
    backbone: Backbone,
) -> None:
    # The publisher chooses the type header: a series per type would grow without bound.
    reader = InMemoryMetricReader()
    telemetry = Telemetry("test", metric_readers=[reader])
    types = [f"zhike.testing.v1.Unknown{i:02d}" for i in range(25)]
    async with consuming(backbone, telemetry=telemetry) as (bus, consumer, _task):
        for index, event_type in enumerate(types):
            await bus.js.publish(
                PING_SUBJECT,
                b"",
                headers={
                    h.MSG_ID: f"u-{index}",
                    h.EVENT_ID: f"u-{index}",
                    h.EVENT_TYPE: event_type,
                },
            )

        async def all_recorded() -> bool:
            return consumer.unhandled == len(types)

        await eventually(all_recorded)
    assert unhandled_counts(reader) == {
        (DURABLE, ""): 0,
        **{(DURABLE, event_type): 1 for event_type in types[:20]},
        (DURABLE, "other"): 5,
    }
