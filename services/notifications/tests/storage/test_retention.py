"""The retention round over SQLite and PostgreSQL: each kind of record is deleted once past its
own keeping, in chunks until none is left, and everything younger stays."""

from __future__ import annotations

import datetime as dt

from zhike_notifications.domain.model import Acceptance, Status
from zhike_notifications.domain.ports import DecisionWithdrawal, StoredNotification
from zhike_notifications.domain.service import Retention

from .conftest import PARTY, T0, Units, add, inbox_entry, stored

DAY = dt.timedelta(days=1)
NOW = T0
# What the consumer inbox keeps by default: the stream's 30 days and 7 more.
WITHDRAWAL_RETENTION = 37 * DAY


def retention(units: Units, chunk: int) -> Retention:
    return Retention(
        units,
        lambda: NOW,
        retention_days=150,
        inbox_message_retention_days=365,
        withdrawal_retention=WITHDRAWAL_RETENTION,
        chunk=chunk,
    )


def sent(notification_id: str, created_at: dt.datetime) -> StoredNotification:
    accepted = Acceptance(1, "sms", f"pm-{notification_id}", created_at)
    return stored(notification_id, created_at=created_at, status=Status.SENT, accepted=accepted)


async def test_a_round_deletes_each_kind_past_its_own_retention_in_chunks_and_keeps_the_rest(
    units: Units,
) -> None:
    await add(
        units,
        *[sent(f"n-old-{i}", NOW - 151 * DAY) for i in range(3)],
        sent("n-kept", NOW - 149 * DAY),
    )
    async with units() as unit:
        for i in range(5):
            await unit.inbox.add(inbox_entry(f"m-old-{i}", NOW - 366 * DAY))
        # Past the send records' 150 days, within the inbox's 365.
        await unit.inbox.add(inbox_entry("m-kept", NOW - 200 * DAY))
        await unit.withdrawals.add(DecisionWithdrawal("d-old", PARTY, NOW - 38 * DAY))
        await unit.withdrawals.add(DecisionWithdrawal("d-kept", PARTY, NOW - 36 * DAY))
        await unit.webhook_deliveries.first_time("sms", "wh-old", NOW - 3 * DAY)
        await unit.webhook_deliveries.first_time("sms", "wh-kept", NOW - DAY)
        await unit.commit()

    # 3 + 5 + 1 + 1 rows, two of a kind per transaction: the inbox's five take three rounds.
    assert await retention(units, chunk=2).prune() == 10

    async with units() as unit:
        notifications = await unit.notifications.of_party(PARTY, None, 100)
        inbox = await unit.inbox.page(PARTY, None, 100, unread_only=False)
        withdrawn = [await unit.withdrawals.get(d) for d in ("d-old", "d-kept")]
        replayed = await unit.webhook_deliveries.first_time("sms", "wh-kept", NOW)
    assert [n.notification_id for n in notifications] == ["n-kept"]
    assert [m.notification_id for m in inbox] == ["m-kept"]
    assert withdrawn == [None, DecisionWithdrawal("d-kept", PARTY, NOW - 36 * DAY)]
    assert not replayed
