"""The notification store over SQLite and PostgreSQL: a notification reads back as written,
its values sealed; one per id and idempotency key; writes only over the version read; what is
due, what the party was sent, what it was asked for (the rate limit's count), paging and
pruning; events staged with the transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
import sqlalchemy as sa

from zhike_notifications.domain.gates import SentMessage
from zhike_notifications.domain.model import (
    Acceptance,
    AttemptFailure,
    Category,
    Channel,
    GiveUp,
    GiveUpReason,
    Message,
    Notification,
    Purpose,
    RetryPlan,
    Status,
    Suppression,
    SuppressionReason,
    Undelivered,
)
from zhike_notifications.domain.ports import (
    NotificationsUnitOfWork,
    Sending,
    StatusChanged,
    StoredNotification,
)
from zhike_notifications.storage.schema import notification
from zhike_runtime.db import Database
from zhike_runtime.errors import ConcurrentUpdate
from zhike_runtime.events.schema import outbox_event

from .conftest import KEYS, OTHER_PARTY, PARTY, T0, Units, add, stored

BEIJING = dt.timezone(dt.timedelta(hours=8))
PASSCODE = "482913"
NAME = "王小明"


def every_fact_set() -> StoredNotification:
    """A record with every fact and every optional field set (not a reachable state: storage
    keeps what it is given). Times in +08:00 come back as the same instants in UTC."""
    created = dt.datetime(2026, 12, 1, 17, 30, 15, 123456, tzinfo=BEIJING)
    at = created + dt.timedelta(minutes=5)
    return StoredNotification(
        notification=Notification(
            notification_id="n-every-fact",
            party_id=PARTY,
            channel=Channel.SMS,
            category=Category.MARKETING,
            template_id="offer_usd_fx_wealth_sms_v1",
            created_at=created,
            decision_id="d-1",
            offer_id="usd_fx_wealth",
            status=Status.DELIVERED,
            version=7,
            deferred_until=at,
            suppression=Suppression(SuppressionReason.FREQUENCY_CAP, "2 in 7 days used"),
            withdrawn_by="d-1",
            attempts=3,
            retry=RetryPlan(3, at + dt.timedelta(minutes=1), "sms-backup"),
            accepted=Acceptance(3, "sms-backup", "pm-123", at + dt.timedelta(minutes=2)),
            gave_up=GiveUp(2, GiveUpReason.RETRIES_EXHAUSTED, "E_TIMEOUT", at),
            last_failure=AttemptFailure(2, "E_TIMEOUT"),
            delivered_at=at + dt.timedelta(minutes=3),
            undelivered=Undelivered(at + dt.timedelta(minutes=4), "E_ABSENT"),
        ),
        message=Message(
            party_id=PARTY,
            channel=Channel.SMS,
            category=Category.MARKETING,
            purpose=Purpose.MARKETING,
            template_id="offer_usd_fx_wealth_sms_v1",
            topic="wealth",
            offer_id="usd_fx_wealth",
            decision_id="d-1",
        ),
        values={"passcode": PASSCODE, "name": NAME},
        idempotency_key="client:key-1",
        request_digest="9f2c" * 16,
        sending=Sending(4, "sms-main", at + dt.timedelta(minutes=6)),
        pinned_provider="sms-main",
        language="zh-CN",
    )


async def test_a_notification_with_every_fact_set_reads_back_equal_by_every_look_up(
    units: Units,
) -> None:
    full = every_fact_set()
    bare = stored("n-bare")
    await add(units, full, bare)

    async with units() as unit:
        store = unit.notifications
        assert await store.get("n-every-fact") == full
        assert await store.get_for_update("n-every-fact") == full
        assert await store.by_idempotency_key("client:key-1") == full
        assert await store.by_decision("d-1") == [full]
        assert await store.by_provider_message("sms-backup", "pm-123") == full
        assert await store.get("n-bare") == bare
        assert await store.get("n-missing") is None
        assert await store.by_idempotency_key("") is None
        assert await store.by_provider_message("sms-main", "pm-123") is None


async def test_template_values_are_sealed_in_the_row(units: Units, database: Database) -> None:
    await add(units, every_fact_set())

    async with database.engine.connect() as connection:
        sealed = await connection.scalar(sa.select(notification.c.template_values))
    assert sealed is not None
    assert sealed.startswith("v1.")
    assert PASSCODE not in sealed
    assert NAME not in sealed
    # Bound to its row: another notification's id does not open it.
    with pytest.raises(Exception, match="cannot be decrypted"):
        KEYS.ring.decrypt(sealed, "notification.template_values", ("n-other",))


async def test_the_longest_decision_id_the_consumer_takes_fits_with_its_notification_id(
    units: Units,
) -> None:
    decision_id = "d" * 58  # event_codec's limit: "offer-" + 58 is the 64 of a notification id
    first = stored(
        f"offer-{decision_id}",
        offer_id="o" * 64,
        decision_id=decision_id,
        idempotency_key=f"offer-decision:{decision_id}",
    )
    await add(units, first)

    async with units() as unit:
        [found] = await unit.notifications.by_decision(decision_id)
    assert found == first


async def test_a_taken_id_or_idempotency_key_adds_nothing(units: Units) -> None:
    first = stored("n-1", idempotency_key="k-1")
    await add(units, first)

    async with units() as unit:
        assert not await unit.notifications.add(stored("n-2", idempotency_key="k-1"))
        assert not await unit.notifications.add(stored("n-1", idempotency_key="k-2"))
        # No key: several notifications without one never collide.
        assert await unit.notifications.add(stored("n-3"))
        assert await unit.notifications.add(stored("n-4"))
        await unit.commit()

    async with units() as unit:
        assert await unit.notifications.by_idempotency_key("k-1") == first
        assert await unit.notifications.get("n-2") is None
        assert await unit.notifications.by_idempotency_key("k-2") is None


async def test_save_over_a_stale_version_raises_concurrent_update_and_writes_nothing(
    units: Units,
) -> None:
    original = stored("n-1")
    await add(units, original)
    deferred = replace(
        original,
        notification=replace(
            original.notification,
            status=Status.DEFERRED,
            deferred_until=T0 + dt.timedelta(hours=12),
            version=2,
        ),
    )
    async with units() as unit:
        await unit.notifications.save(deferred, expected_version=1)
        await unit.commit()

    cancelled = replace(
        original,
        notification=replace(
            original.notification, status=Status.CANCELLED, withdrawn_by="d-9", version=2
        ),
    )
    async with units() as unit:
        with pytest.raises(ConcurrentUpdate):
            await unit.notifications.save(cancelled, expected_version=1)
        with pytest.raises(ConcurrentUpdate):
            await unit.notifications.save(stored("n-unknown"), expected_version=1)
    async with units() as unit:
        assert await unit.notifications.get("n-1") == deferred


async def test_due_returns_due_notifications_oldest_first_never_leased_or_excluded_ones(
    units: Units,
) -> None:
    now = T0 + dt.timedelta(hours=1)
    minute = dt.timedelta(minutes=1)
    await add(
        units,
        stored("queued-late", created_at=T0 + 2 * minute),
        stored("queued-early", created_at=T0),
        stored("retry-due", created_at=T0 - minute, retry=RetryPlan(2, T0 + minute, "sms")),
        stored("retry-later", retry=RetryPlan(2, now + minute, "sms")),
        stored("deferred-due", status=Status.DEFERRED, deferred_until=T0 + 3 * minute),
        stored("deferred-later", status=Status.DEFERRED, deferred_until=now + minute),
        stored("sent", status=Status.SENT, accepted=Acceptance(1, "sms", "pm-1", T0)),
        stored("leased", created_at=T0 - 2 * minute),
        stored("lease-over", created_at=T0 + 4 * minute),
        stored("excluded", created_at=T0 - 3 * minute),
        stored("due-now", created_at=now),
    )
    async with units() as unit:
        await unit.notifications.lease(["leased"], now + minute)
        await unit.notifications.lease(["lease-over"], now)
        await unit.commit()

    async with units() as unit:
        due = await unit.notifications.due(now, limit=10, exclude=["excluded"])
        first_two = await unit.notifications.due(now, limit=2)
    assert due == [
        ("queued-early", PARTY),
        ("retry-due", PARTY),  # its retry time, not its creation, says when
        ("queued-late", PARTY),
        ("deferred-due", PARTY),
        ("lease-over", PARTY),
        ("due-now", PARTY),
    ]
    assert first_two == [("excluded", PARTY), ("queued-early", PARTY)]


async def test_an_attempt_in_flight_is_due_again_once_its_lease_runs_out(units: Units) -> None:
    # A withdrawal cancelled it while an attempt was with the provider: nothing more is to be
    # sent, but the attempt's result must still be asked for if its dispatcher died.
    started = T0 + dt.timedelta(minutes=1)
    in_flight = stored(
        "n-1",
        decision_id="d-1",
        status=Status.CANCELLED,
        withdrawn_by="d-1",
    )
    in_flight = replace(in_flight, sending=Sending(1, "sms-main", started))
    await add(units, in_flight)
    lease_end = started + dt.timedelta(seconds=30)
    async with units() as unit:
        await unit.notifications.lease(["n-1"], lease_end)
        await unit.commit()

    async with units() as unit:
        assert await unit.notifications.due(lease_end - dt.timedelta(seconds=1), 10) == []
        assert await unit.notifications.due(lease_end, 10) == [("n-1", PARTY)]

    # Its result recorded (the provider had accepted it): nothing is due any more.
    sent = replace(
        in_flight,
        sending=None,
        notification=replace(
            in_flight.notification,
            status=Status.SENT,
            attempts=1,
            accepted=Acceptance(1, "sms-main", "pm-1", started),
            version=2,
        ),
    )
    async with units() as unit:
        await unit.notifications.save(sent, expected_version=1)
        await unit.commit()
    async with units() as unit:
        assert await unit.notifications.due(lease_end + dt.timedelta(hours=1), 10) == []


async def test_history_is_every_message_handed_to_a_provider_since_the_time_given(
    units: Units,
) -> None:
    since = T0
    hour = dt.timedelta(hours=1)
    accepted = Acceptance(1, "sms", "pm", T0 + hour)
    await add(
        units,
        stored("sent", offer_id="usd_fx", status=Status.SENT, accepted=accepted),
        stored(
            "delivered",
            channel=Channel.EMAIL,
            category=Category.SERVICE,
            status=Status.DELIVERED,
            accepted=replace(accepted, provider_message_id="pm-2", at=T0 + 2 * hour),
            delivered_at=T0 + 3 * hour,
        ),
        stored(
            "undeliverable",
            status=Status.FAILED,
            accepted=replace(accepted, provider_message_id="pm-3", at=T0 + 3 * hour),
            undelivered=Undelivered(T0 + 4 * hour, "E_ABSENT"),
        ),
        # Created before `since`, deferred, sent after it: counts.
        stored(
            "deferred-then-sent",
            created_at=T0 - 2 * hour,
            status=Status.SENT,
            accepted=replace(accepted, provider_message_id="pm-4", at=T0 + 4 * hour),
        ),
        # Handed over, no result yet.
        replace(stored("in-flight"), sending=Sending(1, "sms", T0 + 5 * hour)),
        # Not handed to a provider, or handed before `since`, or another party's.
        stored("queued"),
        stored(
            "suppressed",
            status=Status.SUPPRESSED,
            suppression=Suppression(SuppressionReason.NO_CONSENT, "no record"),
        ),
        stored(
            "gave-up",
            status=Status.FAILED,
            attempts=1,
            gave_up=GiveUp(1, GiveUpReason.PERMANENT_ERROR, "E_NUMBER", T0 + hour),
        ),
        stored(
            "before",
            created_at=T0 - 2 * hour,
            status=Status.SENT,
            accepted=replace(accepted, provider_message_id="pm-5", at=T0 - hour),
        ),
        stored(
            "other-party",
            party_id=OTHER_PARTY,
            status=Status.SENT,
            accepted=replace(accepted, provider_message_id="pm-6"),
        ),
    )

    async with units() as unit:
        history = await unit.notifications.history(PARTY, since)
    template = "template:deposit_maturity"
    assert history == [
        SentMessage(T0 + hour, Channel.SMS, Category.MARKETING, "offer:usd_fx"),
        SentMessage(T0 + 2 * hour, Channel.EMAIL, Category.SERVICE, template),
        SentMessage(T0 + 3 * hour, Channel.SMS, Category.MARKETING, template),
        SentMessage(T0 + 4 * hour, Channel.SMS, Category.MARKETING, template),
        SentMessage(T0 + 5 * hour, Channel.SMS, Category.MARKETING, template),
    ]


async def test_of_party_pages_newest_first(units: Units) -> None:
    minute = dt.timedelta(minutes=1)
    await add(
        units,
        stored("a", created_at=T0),
        stored("b", created_at=T0 + minute),
        stored("c", created_at=T0 + minute),  # same time: the id breaks the tie
        stored("d", created_at=T0 + 2 * minute),
        stored("other", party_id=OTHER_PARTY, created_at=T0 + minute),
    )
    async with units() as unit:
        first = await unit.notifications.of_party(PARTY, None, 2)
        last = first[-1]
        second = await unit.notifications.of_party(
            PARTY, (last.created_at, last.notification_id), 2
        )
        third = await unit.notifications.of_party(PARTY, (T0, "a"), 2)
    assert [n.notification_id for n in first] == ["d", "c"]
    assert [n.notification_id for n in second] == ["b", "a"]
    assert third == []


async def test_requested_since_is_when_each_of_the_partys_requests_after_the_time_was_made(
    units: Units,
) -> None:
    # What the rate limit counts: every SendNotification request of the party, whatever its
    # status (a SUPPRESSED one was a request too); not offers' decisions, not other parties'.
    second = dt.timedelta(seconds=1)
    await add(
        units,
        stored("at-since", created_at=T0),  # exactly at `since`: already out of the window
        stored("queued", created_at=T0 + 3 * second),
        stored(
            "suppressed",
            created_at=T0 + second,
            status=Status.SUPPRESSED,
            suppression=Suppression(SuppressionReason.FREQUENCY_CAP, "2 in 7 days used"),
        ),
        stored("ahead", created_at=(T0 + 9 * second).astimezone(BEIJING)),
        stored("decided", created_at=T0 + 2 * second, decision_id="d-9", offer_id="usd_fx"),
        stored("other", party_id=OTHER_PARTY, created_at=T0 + 2 * second),
    )

    async with units() as unit:
        requested = await unit.notifications.requested_since(PARTY, T0)

    assert requested == [T0 + second, T0 + 3 * second, T0 + 9 * second]
    assert all(at.tzinfo is not None for at in requested)


async def test_prune_deletes_only_finished_notifications_created_before_the_cut_off(
    units: Units,
) -> None:
    old = T0 - dt.timedelta(days=100)
    accepted = Acceptance(1, "sms", "pm", old)
    await add(
        units,
        stored("sent", created_at=old, status=Status.SENT, accepted=accepted),
        stored("cancelled", created_at=old, status=Status.CANCELLED, withdrawn_by="d"),
        stored(
            "suppressed",
            created_at=old,
            status=Status.SUPPRESSED,
            suppression=Suppression(SuppressionReason.DO_NOT_CONTACT, "do-not-contact"),
        ),
        stored("queued", created_at=old),
        stored("deferred", created_at=old, status=Status.DEFERRED, deferred_until=T0),
        replace(
            stored("cancelled-in-flight", created_at=old, status=Status.CANCELLED),
            sending=Sending(1, "sms", old),
        ),
        stored("recent", created_at=T0, status=Status.SENT, accepted=accepted),
    )
    cut_off = T0 - dt.timedelta(days=90)
    async with units() as unit:
        assert await unit.notifications.prune(cut_off, limit=2) == 2
        assert await unit.notifications.prune(cut_off, limit=2) == 1
        assert await unit.notifications.prune(cut_off, limit=2) == 0
        await unit.commit()
    async with units() as unit:
        kept = [n.notification_id for n in await unit.notifications.of_party(PARTY, None, 100)]
    assert sorted(kept) == ["cancelled-in-flight", "deferred", "queued", "recent"]


async def test_events_and_after_commit_callbacks_take_effect_only_when_the_unit_commits(
    units: Units, database: Database
) -> None:
    sent = stored("n-1", status=Status.SENT).notification
    called: list[str] = []
    async with units() as unit:
        # Left without commit: rolled back, the callback never called.
        unit.record(StatusChanged(sent))
        unit.after_commit(lambda: called.append("rolled back"))
    async with units() as unit:
        port: NotificationsUnitOfWork = unit  # mypy: the unit is what the use cases ask for
        port.record(StatusChanged(sent))
        port.after_commit(lambda: called.append("committed"))
        assert called == []
        await port.commit()
        assert called == ["committed"]
    async with database.engine.connect() as connection:
        subjects = list(await connection.scalars(sa.select(outbox_event.c.subject)))
    assert subjects == ["zhike.notifications.v1.status.sent"]
    assert called == ["committed"]


async def test_on_postgresql_due_skips_rows_another_transaction_holds(
    units: Units, database: Database
) -> None:
    if not database.is_postgres:
        pytest.skip("SQLite runs one writer at a time: nothing to skip")
    await add(units, stored("n-1", created_at=T0), stored("n-2", created_at=T0 + dt.timedelta(1)))
    now = T0 + dt.timedelta(days=2)
    async with units() as holder, units() as dispatcher:
        # A use case holds n-1 (a receipt being recorded); another dispatcher holds n-2 while
        # it leases it. A third dispatcher then finds nothing it could lease.
        assert await holder.notifications.get_for_update("n-1") is not None
        assert await dispatcher.notifications.due(now, 1) == [("n-2", PARTY)]
        async with units() as third:
            assert await third.notifications.due(now, 10) == []
