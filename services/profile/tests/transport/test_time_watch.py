"""The time watch goes round by round through every party not assessed today, and through
every expired risk assessment, until none is left (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from zhike_profile.domain.facts import SourceKey
from zhike_profile.transport import time_watch
from zhike_profile.transport.time_watch import TimeWatch

from ..profile_harness import Harness
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
