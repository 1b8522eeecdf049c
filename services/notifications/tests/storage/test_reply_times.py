"""An SMS reply's time, as the provider states it, stamps the consent withdrawal only where it can
be true: not before the message answered was sent, nor after now. Otherwise notifications' own
clock does: a withdrawal stamped hours early would lose to a consent captured meanwhile, and the
customer who answered TD would go on getting marketing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from zhike_notifications.domain.model import Acceptance, Channel, Purpose, Status
from zhike_notifications.domain.service import Deliveries
from zhike_notifications.storage.repository import SqlNotificationsUnitOfWork
from zhike_notifications.transport.event_codec import outgoing_event
from zhike_runtime.db import Database

from .conftest import KEYS, T0, stored

HOUR = dt.timedelta(hours=1)
SECOND = dt.timedelta(seconds=1)
NOW = T0 + 3 * HOUR  # the SMS went out at T0
PROVIDER = "local_sms"


@pytest.mark.parametrize(
    ("told", "stamped"),
    [
        (T0 + 2 * HOUR, T0 + 2 * HOUR),  # after the send, before now: the provider's time
        (T0 + 5 * HOUR, NOW),  # ahead of our clock
        (T0 - 5 * HOUR, NOW),  # before the SMS it answers went out (a clock eight hours off)
    ],
    ids=["between", "ahead", "before-the-send"],
)
async def test_a_td_reply_is_stamped_with_the_providers_time_only_where_it_can_be_true(
    database: Database, told: dt.datetime, stamped: dt.datetime
) -> None:
    await td_reply_is_stamped(database, NOW, told, stamped)


async def test_a_td_reply_handled_by_a_replica_whose_clock_is_behind_is_never_before_the_send(
    database: Database,
) -> None:
    # The SMS was accepted at T0 by one replica; the reply (stated T0 + 2 s) reaches another
    # whose clock reads T0 - 5 s. Stamped before the send, it would lose to a consent captured
    # just before the send.
    behind = T0 - 5 * SECOND
    await td_reply_is_stamped(database, behind, T0 + 2 * SECOND, T0)


async def td_reply_is_stamped(
    database: Database, now: dt.datetime, told: dt.datetime, stamped: dt.datetime
) -> None:
    def units() -> SqlNotificationsUnitOfWork:
        return SqlNotificationsUnitOfWork(database, outgoing_event, None, KEYS)

    party_id = str(uuid.uuid4())
    async with units() as unit:
        assert await unit.notifications.add(
            stored(
                f"sms-{party_id}",
                party_id=party_id,
                status=Status.SENT,
                accepted=Acceptance(1, PROVIDER, f"pm-{party_id}", T0),
            )
        )
        await unit.commit()

    await Deliveries(units, lambda: now).record_reply(
        "reply-1", PROVIDER, f"pm-{party_id}", "TD", told
    )

    async with units() as unit:
        [entry] = (await unit.consents.held(party_id)).entries
    assert (entry.record.channel, entry.record.purpose, entry.record.given) == (
        Channel.SMS,
        Purpose.MARKETING,
        False,
    )
    assert entry.record.evidence is not None
    assert (entry.decided_at, entry.record.evidence.captured_at) == (stamped, stamped)
