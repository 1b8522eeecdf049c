"""The inbox keeps each consumer's event ids as long as the stream can redeliver them, and no
longer: a periodic task deletes the consumer's own rows older than the retention."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from zhike_runtime.db import DELETE_CHUNK
from zhike_runtime.events.consumer import EventConsumer
from zhike_runtime.events.schema import inbox_event
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.services import TEST_SETTINGS, eventually

from ..conftest import Backbone, fast_settings
from .test_consumer import DURABLE, SPEC, consuming

DAY = dt.timedelta(days=1)


async def add_inbox_rows(
    backbone: Backbone, consumer: str, prefix: str, count: int, processed_at: dt.datetime
) -> None:
    rows = [
        {
            "consumer": consumer,
            "event_id": f"{prefix}-{i}",
            "event_type": "zhike.testing.v1.Ping",
            "processed_at": processed_at,
        }
        for i in range(count)
    ]
    async with backbone.database.session() as session, session.begin():
        await session.execute(sa.insert(inbox_event), rows)


async def inbox(backbone: Backbone, consumer: str) -> int:
    return await backbone.count(inbox_event, inbox_event.c.consumer == consumer)


async def test_the_running_consumer_prunes_its_own_rows_past_the_retention(
    backbone: Backbone,
) -> None:
    now = dt.datetime.now(dt.UTC)
    retention = backbone.settings.inbox_retention_seconds
    assert retention > backbone.settings.stream_max_age_seconds
    expired = now - dt.timedelta(seconds=retention) - DAY
    kept = now - dt.timedelta(seconds=backbone.settings.stream_max_age_seconds)
    await add_inbox_rows(backbone, DURABLE, "expired", 30, expired)
    await add_inbox_rows(backbone, DURABLE, "recent", 20, kept)
    await add_inbox_rows(backbone, "another-consumer", "expired", 10, expired)
    settings = fast_settings(
        backbone.database.url, backbone.nats.url, consumer_inbox_prune_interval_seconds=0.2
    )
    async with consuming(backbone, settings=settings):

        async def pruned() -> bool:
            return await inbox(backbone, DURABLE) == 20

        await eventually(pruned)
    assert await inbox(backbone, "another-consumer") == 10  # not this consumer's to delete


async def test_pruning_a_large_backlog_deletes_in_chunks_until_done(backbone: Backbone) -> None:
    now = dt.datetime.now(dt.UTC)
    await add_inbox_rows(backbone, DURABLE, "old", 2 * DELETE_CHUNK + 7, now - 60 * DAY)
    await add_inbox_rows(backbone, DURABLE, "new", 3, now)
    consumer = EventConsumer(
        SPEC, backbone.database, backbone.bus(), backbone.telemetry, backbone.settings
    )
    assert await consumer.prune_inbox(now - 40 * DAY) == 2 * DELETE_CHUNK + 7
    assert await inbox(backbone, DURABLE) == 3
    assert await consumer.prune_inbox(now - 40 * DAY) == 0


def test_the_inbox_retention_must_outlast_the_stream() -> None:
    base = {**TEST_SETTINGS, "stream_max_age_seconds": 30 * 86400}
    default = ServiceSettings(**base)
    assert default.inbox_retention_seconds == 37 * 86400
    with pytest.raises(ValidationError, match="ZHIKE_CONSUMER_INBOX_RETENTION_SECONDS"):
        ServiceSettings(**base, consumer_inbox_retention_seconds=30 * 86400)
    longer = ServiceSettings(**base, consumer_inbox_retention_seconds=90 * 86400)
    assert longer.inbox_retention_seconds == 90 * 86400
