"""A migrated database (SQLite and PostgreSQL: `database_url`), units of work over it, and
builders of stored notifications."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

import zhike_notifications.storage
from zhike_notifications.domain.model import Category, Channel, Message, Notification, Purpose
from zhike_notifications.domain.ports import (
    InboxEntry,
    OutboundEvent,
    StatusChanged,
    StoredNotification,
)
from zhike_notifications.storage.repository import SqlNotificationsUnitOfWork
from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.services import fixed_field_keys, migrate_databases

MIGRATIONS = Path(zhike_notifications.storage.__file__).resolve().parent / "migrations"
KEYS: FieldKeys = fixed_field_keys()
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
PARTY = "00000000-0000-0000-0000-000000000001"
OTHER_PARTY = "00000000-0000-0000-0000-000000000002"

Units = Callable[[], SqlNotificationsUnitOfWork]


def encode(event: OutboundEvent) -> OutgoingEvent:
    """A stand-in for the transport's codec: the subject and id say which event it was."""
    assert isinstance(event, StatusChanged)
    n = event.notification
    return OutgoingEvent(
        f"zhike.notifications.v1.status.{n.status.value}", StringValue(value=n.notification_id)
    )


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    migrated = Database(database_url)
    await apply_migrations(migrated, MIGRATIONS)
    yield migrated
    await migrated.dispose()


@pytest.fixture
def units(database: Database) -> Units:
    return lambda: SqlNotificationsUnitOfWork(database, encode, None, KEYS)


def stored(
    notification_id: str,
    *,
    party_id: str = PARTY,
    created_at: dt.datetime = T0,
    channel: Channel = Channel.SMS,
    category: Category = Category.MARKETING,
    offer_id: str = "",
    decision_id: str = "",
    idempotency_key: str = "",
    **facts: object,
) -> StoredNotification:
    """A notification as first stored (QUEUED, version 1); `facts` replace its fields."""
    message = Message(
        party_id=party_id,
        channel=channel,
        category=category,
        purpose=Purpose.MARKETING if category is Category.MARKETING else Purpose.SERVICE,
        template_id="deposit_maturity",
        offer_id=offer_id,
        decision_id=decision_id,
    )
    notification = Notification(
        notification_id=notification_id,
        party_id=party_id,
        channel=channel,
        category=category,
        template_id=message.template_id,
        created_at=created_at,
        decision_id=decision_id,
        offer_id=offer_id,
    )
    return StoredNotification(
        notification=replace(notification, **facts),  # type: ignore[arg-type]
        message=message,
        idempotency_key=idempotency_key,
    )


def inbox_entry(notification_id: str, created_at: dt.datetime, party_id: str = PARTY) -> InboxEntry:
    """A message in the party's in-app inbox (its text names the customer: it is sealed)."""
    return InboxEntry(
        notification_id=notification_id,
        party_id=party_id,
        template_id="deposit_maturity",
        language="zh-CN",
        subject="您的定期存款即将到期",
        body="王小明您好，您的定期存款将于下周到期。",
        created_at=created_at,
    )


async def add(units: Units, *notifications: StoredNotification) -> None:
    async with units() as unit:
        for item in notifications:
            assert await unit.notifications.add(item)
        await unit.commit()


@pytest.fixture
def migrated(database_url: str) -> str:
    """A migrated database's URL, for the state machines, which open their own connections."""
    migrate_databases([database_url], MIGRATIONS)
    return database_url


def run_machine(
    machine: type[RuleBasedStateMachine], url: str, *, examples: int, steps: int
) -> None:
    """Runs a state machine (whose `url` class attribute names its database) over the migrated
    database at `url`."""
    run_state_machine_as_test(
        type(f"{machine.__name__}UnderTest", (machine,), {"url": url}),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
