"""A party over SendNotification's rate limit is refused without waiting for the party's lock.
Under a flood for one party, every request would otherwise queue on that lock while holding one
of the pool's connections, and other parties' passcodes would wait for a connection behind it.
PostgreSQL only: SQLite has one writer at a time anyway."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from zhike_notifications.domain.model import Category, Channel
from zhike_notifications.domain.rate_limit import RateWindow
from zhike_notifications.domain.service import Intake, SendRequest, Templates, party_lock
from zhike_notifications.templates import load_templates
from zhike_notifications.testing import REQUEST_DIGEST
from zhike_runtime.db import Database
from zhike_runtime.errors import ResourceExhausted

from .conftest import Units

PARTY = str(uuid.UUID(int=11))


def passcode(key: str) -> SendRequest:
    return SendRequest(
        PARTY, Channel.SMS, "otp_sms_v1", key, Category.TRANSACTIONAL, None, {"code": "482913"}
    )


async def test_a_party_over_the_limit_is_refused_while_another_request_holds_its_lock(
    database: Database, units: Units
) -> None:
    if not database.is_postgres:
        pytest.skip("SQLite runs one writer at a time: there is no lock to pass by")
    intake = Intake(
        units,
        Templates(load_templates(None)),
        lambda: dt.datetime.now(dt.UTC),
        request_digest=REQUEST_DIGEST,
        rate_limit=(RateWindow(dt.timedelta(hours=1), 1),),
    )
    await intake.send(passcode("first"))
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_the_party_lock() -> None:
        async with units() as unit:
            await unit.lock([party_lock(PARTY)])
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_party_lock())
    try:
        await held.wait()
        with pytest.raises(ResourceExhausted):
            # Bounded only so that a request queued on the lock fails the test, not hangs it.
            await asyncio.wait_for(intake.send(passcode("second")), timeout=10)
    finally:
        release.set()
        await holder
