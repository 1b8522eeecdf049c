"""The audit log on SQLite and PostgreSQL: a record appended is there as soon as append returns,
for any other connection to read (on PostgreSQL it is one autocommitted INSERT)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from zhike_runtime.auth.audit import AuditEntry, AuditLog
from zhike_runtime.db import Database
from zhike_runtime.migrations import apply_migrations


async def test_an_appended_record_is_committed_when_append_returns(database_url: str) -> None:
    database = Database(database_url)
    other = Database(database_url)
    try:
        await apply_migrations(database, None)
        entry = AuditEntry(
            actor="teller-0042",
            roles=("branch_teller",),
            method="/zhike.profile.v1.ProfileService/GetProfile",
            party_id="p-1",
            fields=("holdings.account_id",),
            purpose="account opening",
            outcome="OK",
            trace_id="t" * 32,
            recorded_at=dt.datetime(2026, 12, 2, 1, tzinfo=dt.UTC),
        )

        await AuditLog(database, dt.timedelta(days=365)).append(entry)

        assert await AuditLog(other, dt.timedelta(days=365)).read(party_id="p-1") == [entry]
    finally:
        await database.dispose()
        await other.dispose()


@pytest.fixture
async def audit(database_url: str) -> AsyncIterator[AuditLog]:
    database = Database(database_url)
    await apply_migrations(database, None)
    try:
        yield AuditLog(database, dt.timedelta(days=365))
    finally:
        await database.dispose()


def recorded(at: dt.datetime, **fields: Any) -> AuditEntry:
    """A teller's read of a profile at `at`, with `fields` replaced."""
    base: dict[str, Any] = {
        "actor": "teller-1",
        "roles": ("branch_teller",),
        "method": "/zhike.profile.v1.ProfileService/GetProfile",
        "party_id": "p-1",
        "fields": (),
        "purpose": "",
        "outcome": "OK",
        "trace_id": "",
    }
    return AuditEntry(**(base | fields), recorded_at=at)


async def test_records_since_a_time_given_in_another_zone_are_those_after_that_instant(
    audit: AuditLog,
) -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    for hour in (0, 1, 2):
        # Given in the bank's zone: 08:00, 09:00 and 10:00 in Shanghai.
        at = dt.datetime(2026, 12, 4, hour, tzinfo=dt.UTC).astimezone(shanghai)
        await audit.append(recorded(at, actor=f"teller-{hour}"))

    since = dt.datetime(2026, 12, 4, 9, 30, tzinfo=shanghai)  # 01:30 UTC
    read = await audit.read(since=since)

    assert [(e.actor, e.recorded_at) for e in read] == [
        ("teller-2", dt.datetime(2026, 12, 4, 2, tzinfo=dt.UTC))
    ]


async def test_a_nul_in_what_a_refused_call_asked_for_is_stored_replaced(audit: AuditLog) -> None:
    # Calls are audited before their request is validated; PostgreSQL refuses NUL in text.
    refused = recorded(
        dt.datetime(2026, 12, 4, 1, tzinfo=dt.UTC),
        actor="app-user",
        roles=("channel_app",),
        method="/zhike.notifications.v1.NotificationsService/ListInbox",
        party_id="a\x00b",
        outcome="NOT_FOUND",
    )

    await audit.append(refused)

    assert [e.party_id for e in await audit.read()] == ["a\ufffdb"]


async def test_expiry_deletes_the_records_older_than_the_retention_and_keeps_the_rest(
    audit: AuditLog,
) -> None:
    now = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
    for days_ago in (400, 366, 364, 1):
        await audit.append(recorded(now - dt.timedelta(days=days_ago), actor=f"t-{days_ago}"))

    assert await audit.expire(now) == 2

    assert sorted(e.actor for e in await audit.read()) == ["t-1", "t-364"]
