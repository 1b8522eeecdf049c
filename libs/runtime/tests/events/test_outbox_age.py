"""The outbox's age gauge, what the ZhikeOutboxBacklogOld alert watches: the age of the oldest
committed event not yet published, growing while the broker is away, 0 once it is sent."""

from __future__ import annotations

import asyncio
import datetime as dt

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from sqlalchemy import update

from zhike_runtime.events.outbox import add_to_outbox
from zhike_runtime.events.relay import OutboxRelay
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.services import eventually

from ..conftest import Backbone, ping


def oldest_unsent_age(reader: InMemoryMetricReader) -> dict[str, float]:
    """zhike.outbox.oldest_unsent_age by service, from a real metric collection."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        str(point.attributes["service"]): float(point.value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "zhike.outbox.oldest_unsent_age"
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint) and point.attributes is not None
    }


async def test_the_oldest_unsent_age_grows_while_the_broker_is_away_and_is_zero_once_sent(
    backbone: Backbone,
) -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry("identity", metric_readers=[reader])
    async with backbone.database.session() as session, session.begin():
        await add_to_outbox(session, [ping("waiting")])
        # Committed ten minutes ago, as if the broker had been away that long.
        ten_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        await session.execute(update(outbox_event).values(created_at=ten_minutes_ago))
    bus = backbone.bus()  # not connected yet: the relay cannot publish
    relay = OutboxRelay(backbone.database, bus, telemetry, poll_seconds=0.05)
    task = asyncio.create_task(relay.run())
    try:

        async def ten_minutes_old() -> bool:
            return oldest_unsent_age(reader).get("identity", 0.0) >= 600

        await eventually(ten_minutes_old)
        first = oldest_unsent_age(reader)["identity"]
        await asyncio.sleep(1.1)
        assert oldest_unsent_age(reader)["identity"] >= first + 1  # it keeps growing

        await bus.run()

        async def sent_and_reported() -> bool:
            return oldest_unsent_age(reader) == {"identity": 0.0}

        # The relay refreshes the oldest row with its housekeeping, every 5 s.
        await eventually(sent_and_reported, timeout=15)
        assert await relay.backlog() == 0
    finally:
        relay.stop()
        await task
        await bus.close()
        telemetry.shutdown()
