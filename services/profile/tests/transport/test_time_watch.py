"""The time watch goes round by round through every party not assessed today, and through
every expired risk assessment, until none is left; the daily refresh tells birthdays (SQLite and
PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from zhike.profile.v1 import events_pb2
from zhike_profile.domain.facts import SourceKey
from zhike_profile.storage import schema
from zhike_profile.transport import time_watch
from zhike_profile.transport.time_watch import TimeWatch

from ..profile_harness import Harness, age_facts
from ..source_facts import T0, risk_assessed, source_event


def watch(harness: Harness) -> TimeWatch:
    return TimeWatch(
        harness.updates, harness.unit, risk_expiry_seconds=60, daily_refresh_seconds=60
    )


async def test_the_daily_refresh_looks_at_every_party_once_a_day_over_several_rounds(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time_watch, "ROUND", 2)
    for index in range(5):
        await harness.linked(f"l{index}", SourceKey("crm", str(index)), str(uuid.uuid4()), 1)
    harness.now = T0 + dt.timedelta(days=1)

    assert await watch(harness).refresh_daily() == 5
    assert await watch(harness).refresh_daily() == 0


async def test_every_expired_risk_assessment_is_told_over_several_rounds(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time_watch, "ROUND", 2)
    assessed = risk_assessed(3, dt.date(2025, 11, 3), dt.date(2026, 11, 3))
    for index in range(3):
        await harness.linked(f"l{index}", SourceKey("crm", str(index)), str(uuid.uuid4()), 1)
        await harness.source(source_event("crm", str(index), f"r{index}", 1, **assessed))
    harness.now = T0 + dt.timedelta(days=1)  # 3 November in Shanghai: expired

    assert await watch(harness).tell_expired_risks() == 3
    assert await watch(harness).tell_expired_risks() == 0


async def test_the_daily_refresh_tells_the_new_age_on_the_birthday_in_the_banks_time_zone(
    harness: Harness,
) -> None:
    birthday_today, birthday_tomorrow = str(uuid.uuid4()), str(uuid.uuid4())
    for index, (party_id, born) in enumerate(
        ((birthday_today, dt.date(1996, 11, 3)), (birthday_tomorrow, dt.date(1996, 11, 4)))
    ):
        await harness.linked(f"l{index}", SourceKey("crm", str(index)), party_id, 1)
        await harness.named(f"g{index}", party_id, "刘晓燕", T0, born)
    told_before = len(await harness.changes())
    # 17:00 UTC on 2 November is 01:00 on 3 November in Shanghai: the bank's day has turned.
    harness.now = dt.datetime(2026, 11, 2, 17, tzinfo=dt.UTC)

    assert await watch(harness).refresh_daily() == 2

    told = (await harness.changes())[told_before:]
    assert age_facts(told, birthday_today) == [(29, 30)]
    assert age_facts(told, birthday_tomorrow) == []
    assert {c.cause for c in told if c.party_id == birthday_today} == {events_pb2.CHANGE_CAUSE_TIME}


async def test_after_the_upgrade_the_daily_refresh_tells_each_known_age_once(
    harness: Harness,
) -> None:
    born, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    await harness.linked("l1", SourceKey("crm", "1"), born, 1)
    await harness.named("g1", born, "刘晓燕", T0, dt.date(1996, 5, 1))
    await harness.linked("l2", SourceKey("crm", "2"), unknown, 1)
    # The snapshots as the release before this one stored them: without the age.
    async with harness.database.session() as session:
        rows = await session.execute(
            sa.select(schema.profile.c.party_id, schema.profile.c.snapshot)
        )
        for party_id, snapshot in rows.all():
            assert "age" in snapshot  # as this release stores it
            del snapshot["age"]
            await session.execute(
                sa.update(schema.profile)
                .where(schema.profile.c.party_id == party_id)
                .values(snapshot=snapshot)
            )
        await session.commit()
    told_before = len(await harness.changes())

    for day in (1, 2):
        harness.now = T0 + dt.timedelta(days=day)
        await watch(harness).refresh_daily()

    told = (await harness.changes())[told_before:]
    assert age_facts(told, born) == [(None, 30)]
    assert age_facts(told, unknown) == []
