"""Shared pieces for the runtime's own tests: a migrated database, a bus, a test event type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from zhike.testing.v1 import events_pb2
from zhike_runtime.db import Database
from zhike_runtime.events.bus import EventBus, StreamSpec
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import TEST_SETTINGS

TEST_STREAM = StreamSpec("ZHIKE_TESTING", ("zhike.testing.v1.>",))
PING_SUBJECT = "zhike.testing.v1.ping"

# The effect a test consumer applies: one row per applied event, so duplicates are countable.
effects_metadata = sa.MetaData()
ping_effect = sa.Table(
    "ping_effect",
    effects_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
)


def ping(key: str, *, poison: bool = False) -> OutgoingEvent:
    return OutgoingEvent(PING_SUBJECT, events_pb2.Ping(key=key, poison=poison))


def fast_settings(database_url: str, nats_url: str, **overrides: object) -> ServiceSettings:
    values: dict[str, object] = {
        **TEST_SETTINGS,
        "database_url": database_url,
        "nats_url": nats_url,
        "consumer_backoff_seconds": [0.2, 0.2, 0.2, 0.2],
        "consumer_max_deliver": 5,
        "consumer_ack_wait_seconds": 1.0,
        "consumer_batch_size": 100,
        "outbox_poll_seconds": 0.05,
    }
    return ServiceSettings(**(values | overrides))  # type: ignore[arg-type]


@dataclass
class Backbone:
    database: Database
    nats: NatsServer
    settings: ServiceSettings
    telemetry: Telemetry

    def bus(self, name: str = "test") -> EventBus:
        bus = EventBus(self.nats.url, client_name=name, duplicate_window_seconds=2.0)
        bus.add_stream(TEST_STREAM)
        return bus

    async def count(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        async with self.database.session() as session:
            value = await session.scalar(
                sa.select(sa.func.count()).select_from(table).where(*where)
            )
        return int(value or 0)


@pytest.fixture
async def backbone(database_url: str, nats_server: NatsServer) -> AsyncIterator[Backbone]:
    database = Database(database_url)
    await apply_migrations(database, None)
    async with database.engine.begin() as connection:
        await connection.run_sync(effects_metadata.create_all)
    yield Backbone(
        database, nats_server, fast_settings(database_url, nats_server.url), Telemetry("test")
    )
    await database.dispose()
