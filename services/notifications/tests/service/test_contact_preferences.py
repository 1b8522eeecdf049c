"""The customer's own switches, as offers announces them (ContactPreferencesChanged on offers'
stream): a late older announcement, or a repeated one, never undoes a newer one, and the gates
keep reading the newer. Real parts: nats-server, identity and the profile, the local SMS
gateway. The whole road from offers' SetContactPreferences to the gates, with do-not-contact,
an SMS opt-out and a one-time passcode, is the journey
tests/integration/test_contact_preferences_gate_notifications.py."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.offers.v1 import events_pb2 as offers_events
from zhike.offers.v1 import offers_pb2
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import eventually

from ..stack import NotificationsProcess, Stack, notifications_stack, stamp

SUBJECT = "zhike.offers.v1.contact_preferences_changed"
SUPPRESSED = model_pb.NOTIFICATION_STATUS_SUPPRESSED
SENT = model_pb.NOTIFICATION_STATUS_SENT


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with notifications_stack(nats_server, tmp_path) as running:
        yield running


async def preferences_changed(
    stack: Stack,
    party_id: str,
    version: int,
    *,
    do_not_contact: bool = False,
    opted_out: Sequence[offers_pb2.Channel.ValueType] = (),
    event_id: str | None = None,
) -> None:
    """As offers' relay publishes it after SetContactPreferences."""
    await stack.publish(
        SUBJECT,
        offers_events.ContactPreferencesChanged(
            party_id=party_id,
            do_not_contact=do_not_contact,
            personalised_offers=True,
            opted_out_channels=opted_out,
            preferences_version=version,
            change_time=stamp(dt.datetime.now(dt.UTC)),
        ),
        event_id,
    )


async def held_version(stack: Stack, party_id: str) -> int:
    """The preferences version notifications holds for the party (0: none)."""
    assert not isinstance(stack.notifications, NotificationsProcess)  # in-process only
    database = stack.notifications.database
    async with database.session() as session:
        found = await session.scalar(
            sa.text("SELECT version FROM contact_preferences WHERE party_id = :party"),
            {"party": party_id},
        )
    return int(found or 0)


async def arrives(stack: Stack, party_id: str, version: int) -> None:
    async def held() -> bool:
        return await held_version(stack, party_id) == version

    await eventually(held, timeout=20)


async def test_a_late_older_or_repeated_announcement_does_not_undo_a_newer_one(
    stack: Stack,
) -> None:
    party_id = await stack.link("LATE-1")
    newer = str(uuid.uuid4())
    await preferences_changed(
        stack, party_id, 2, opted_out=[offers_pb2.CHANNEL_SMS], event_id=newer
    )
    await arrives(stack, party_id, 2)

    # Version 1 (nothing opted out) arrives late, and version 2 again (the same event, and a
    # copy under another id); then a marker for another party, behind them in the stream.
    await preferences_changed(stack, party_id, 1)
    await preferences_changed(stack, party_id, 2, event_id=newer)
    await preferences_changed(stack, party_id, 2)
    marker = str(uuid.uuid4())
    await preferences_changed(stack, marker, 1)
    await arrives(stack, marker, 1)

    assert await held_version(stack, party_id) == 2
    service = await stack.send(
        party_id,
        "deposit_maturity_sms_v1",
        key=f"svc-{uuid.uuid4()}",
        category=model_pb.NOTIFICATION_CATEGORY_SERVICE,
        values={"account": "6217001234561234", "maturity_date": "2026-04-08"},
    )
    done = await stack.status_becomes(service.notification_id, SUPPRESSED)
    assert done.suppression.reason == model_pb.SUPPRESSION_REASON_CHANNEL_OPTED_OUT
    assert stack.sms() == []
