"""Offers' decisions through NATS into notifications, over the real stack: a consented party's
OfferDecided becomes one SMS with its opt-out line and a NotificationSent event that carries no
phone and no text; a redelivered decision is still one SMS; a withdrawal cancels a deferred send,
and one that overtook its decision leaves it cancelled from the start; a send deferred past its
offer's close is cancelled at the close, and one that arrives after it is never sent; a deferred
send keeps its time across a restart.

One stack serves the module, with a calendar in which every day is a working day; each party's
time zone makes it early afternoon there, inside the marketing window.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from zhike.notifications.v1 import events_pb2
from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.testing import every_day_working_calendar, midday_zone
from zhike_notifications.transport.event_codec import SENT_SUBJECT
from zhike_notifications.transport.event_handlers import (
    OFFERS_DURABLE,
    OFFERS_STREAM,
    PROFILE_DURABLE,
)
from zhike_runtime.app import RunningService
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import eventually

from ..flows import consent_on_profile_stream, consumed, link_person, offer_taken, published
from ..stack import Stack, notifications_stack, stamp

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPT_OUT = "回复TD退订"
STATUS = model_pb


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    directory = tmp_path_factory.mktemp("stack")
    try:
        async with notifications_stack(
            server,
            directory,
            calendar_file=every_day_working_calendar(directory / "calendar.yaml"),
        ) as running:
            yield running
    finally:
        server.stop()


class Parties:
    """Consented parties, each a person of its own."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._count = 100

    async def consented(self, *, quiet_hours: tuple[dt.time, dt.time] | None = None) -> str:
        """A party who gave consent to marketing SMS, in a time zone where it is early
        afternoon (quiet hours as given), once notifications holds the consent."""
        self._count += 1
        record_id = f"OFFER-{self._count}"
        party_id = await link_person(self._stack, record_id, number=self._count)
        await self._stack.set_preferences(
            record_id, party_id, time_zone=midday_zone(), quiet_hours=quiet_hours
        )
        await self._stack.give_consent(
            record_id, source_pb.CONTACT_CHANNEL_SMS, source_pb.CONTACT_PURPOSE_MARKETING
        )
        await self._stack.consent_arrives(party_id)
        return party_id


@pytest.fixture(scope="module")
def parties(stack: Stack) -> Parties:
    return Parties(stack)


def decision() -> str:
    return f"d-{uuid.uuid4().hex}"


def sms_for(stack: Stack, notification_id: str) -> list[dict[str, object]]:
    return [m for m in stack.sms() if m["out_id"] == notification_id]


def quiet_now() -> tuple[dt.time, dt.time]:
    """Quiet hours around the early afternoon of `midday_zone`: a send now is deferred."""
    return dt.time(13, 0), dt.time(17, 0)


async def test_a_consented_decision_becomes_one_sms_with_its_opt_out_and_a_sent_event(
    stack: Stack, parties: Parties
) -> None:
    party_id = await parties.consented()
    decision_id = decision()

    await offer_taken(stack, party_id, decision_id)
    sent = await stack.status_becomes(f"offer-{decision_id}", STATUS.NOTIFICATION_STATUS_SENT)

    [sms] = sms_for(stack, sent.notification_id)
    assert OPT_OUT in str(sms["text"])
    assert sent.decision_id == decision_id
    assert sent.category == model_pb.NOTIFICATION_CATEGORY_MARKETING

    # NotificationSent leaves through the outbox relay, after the status is stored.
    async def announced() -> bool:
        payloads = await published(stack.nats, SENT_SUBJECT)
        return any(sent.notification_id.encode() in p for p in payloads)

    await eventually(announced, timeout=10)
    payloads = await published(stack.nats, SENT_SUBJECT)
    events = [events_pb2.NotificationSent.FromString(p) for p in payloads]
    [event] = [e for e in events if e.notification_id == sent.notification_id]
    assert event.party_id == party_id
    assert event.decision_id == decision_id
    assert event.provider == "local_sms"
    raw = next(p for p in payloads if sent.notification_id.encode() in p)
    assert str(sms["to"]).encode() not in raw
    assert b"13900" not in raw  # no part of the phone
    assert str(sms["text"]).encode() not in raw
    assert OPT_OUT.encode() not in raw


async def test_a_decision_delivered_twice_is_one_notification_and_one_sms(
    stack: Stack, parties: Parties
) -> None:
    party_id = await parties.consented()
    decision_id = decision()

    await offer_taken(stack, party_id, decision_id)
    await stack.status_becomes(f"offer-{decision_id}", STATUS.NOTIFICATION_STATUS_SENT)
    # The same decision again, as offers' relay would republish it (a new event id).
    await offer_taken(stack, party_id, decision_id)
    await consumed(stack.nats, OFFERS_STREAM, OFFERS_DURABLE)

    assert len(sms_for(stack, f"offer-{decision_id}")) == 1
    after = await stack.notification(f"offer-{decision_id}")
    assert after.status == STATUS.NOTIFICATION_STATUS_SENT
    assert after.attempts == 1


async def test_a_withdrawal_cancels_a_send_deferred_by_quiet_hours(
    stack: Stack, parties: Parties
) -> None:
    party_id = await parties.consented(quiet_hours=quiet_now())
    decision_id = decision()
    notification_id = f"offer-{decision_id}"

    await offer_taken(stack, party_id, decision_id)
    deferred = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_DEFERRED)
    await stack.offer_withdrawn(party_id, decision_id)
    cancelled = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_CANCELLED)

    assert deferred.HasField("deferred_until")
    assert cancelled.cancelled_by_decision_id == decision_id
    assert sms_for(stack, notification_id) == []


async def test_a_send_deferred_past_its_offers_close_is_cancelled_at_the_close(
    stack: Stack, parties: Parties
) -> None:
    # Offers withdraws the decision (expired) only on its next round, up to 30 s after the
    # close: notifications must not send it meanwhile, nor after.
    party_id = await parties.consented(quiet_hours=quiet_now())
    decision_id = decision()
    notification_id = f"offer-{decision_id}"
    closes = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)

    await offer_taken(stack, party_id, decision_id, offer_valid_until=closes)
    deferred = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_DEFERRED)
    cancelled = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_CANCELLED)

    assert deferred.deferred_until.ToDatetime(tzinfo=dt.UTC) > closes
    assert cancelled.cancelled_by_decision_id == decision_id
    assert sms_for(stack, notification_id) == []


async def test_a_decision_arriving_after_its_offer_closed_is_cancelled_unsent(
    stack: Stack, parties: Parties
) -> None:
    party_id = await parties.consented()
    decision_id = decision()
    notification_id = f"offer-{decision_id}"

    closed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await offer_taken(stack, party_id, decision_id, offer_valid_until=closed)
    cancelled = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_CANCELLED)

    assert cancelled.cancelled_by_decision_id == decision_id
    assert cancelled.attempts == 0
    assert sms_for(stack, notification_id) == []


async def test_a_decision_arriving_after_withdrawals_are_kept_is_cancelled_unsent(
    stack: Stack, parties: Parties
) -> None:
    # Its withdrawal, if there was one, may be deleted by now (a dead letter replayed weeks on).
    party_id = await parties.consented()
    decision_id = decision()
    notification_id = f"offer-{decision_id}"
    assert isinstance(stack.notifications, RunningService)
    kept = dt.timedelta(seconds=stack.notifications.settings.inbox_retention_seconds)

    made = dt.datetime.now(dt.UTC) - kept - dt.timedelta(minutes=1)
    await offer_taken(stack, party_id, decision_id, decided_at=made)
    cancelled = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_CANCELLED)

    assert cancelled.cancelled_by_decision_id == decision_id
    assert cancelled.attempts == 0
    assert sms_for(stack, notification_id) == []


async def test_a_withdrawal_that_overtook_its_decision_leaves_it_cancelled_and_unsent(
    stack: Stack, parties: Parties
) -> None:
    party_id = await parties.consented()
    decision_id = decision()
    notification_id = f"offer-{decision_id}"

    await stack.offer_withdrawn(party_id, decision_id)
    await consumed(stack.nats, OFFERS_STREAM, OFFERS_DURABLE)
    await offer_taken(stack, party_id, decision_id)
    cancelled = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_CANCELLED)

    assert cancelled.cancelled_by_decision_id == decision_id
    assert cancelled.attempts == 0
    assert sms_for(stack, notification_id) == []
    assert (await stack.notification(notification_id)).status == (
        STATUS.NOTIFICATION_STATUS_CANCELLED
    )


async def test_a_decision_that_overtook_its_consent_waits_for_it_and_is_sent(
    stack: Stack,
) -> None:
    # Offers decided on profile version 1000, whose consent notifications has not applied yet.
    party_id = await link_person(stack, "CATCH-UP-1", number=901)
    # Early afternoon where he lives: the send is not deferred by quiet hours, whenever CI runs.
    await stack.set_preferences("CATCH-UP-1", party_id, time_zone=midday_zone())
    decision_id = decision()

    await offer_taken(stack, party_id, decision_id, profile_version=1000)
    waiting = await stack.status_becomes(
        f"offer-{decision_id}", STATUS.NOTIFICATION_STATUS_DEFERRED
    )
    await consent_on_profile_stream(stack, party_id, 1000)
    sent = await stack.status_becomes(f"offer-{decision_id}", STATUS.NOTIFICATION_STATUS_SENT)

    assert waiting.suppression.reason == model_pb.SUPPRESSION_REASON_UNSPECIFIED
    assert len(sms_for(stack, sent.notification_id)) == 1


async def test_a_decision_on_a_profile_version_already_applied_without_consent_is_refused_at_once(
    stack: Stack,
) -> None:
    party_id = await link_person(stack, "CATCH-UP-2", number=902)
    await stack.publish(
        "zhike.profile.v1.profile_changed",
        profile_events.ProfileChanged(
            party_id=party_id,
            profile_version=2000,
            change_time=stamp(dt.datetime.now(dt.UTC)),
            cause=profile_events.CHANGE_CAUSE_SOURCE_EVENT,
        ),
    )
    await consumed(stack.nats, "ZHIKE_PROFILE", PROFILE_DURABLE)
    decision_id = decision()

    await offer_taken(stack, party_id, decision_id, profile_version=2000)
    refused = await stack.status_becomes(
        f"offer-{decision_id}", STATUS.NOTIFICATION_STATUS_SUPPRESSED
    )

    assert refused.suppression.reason == model_pb.SUPPRESSION_REASON_NO_CONSENT
    assert sms_for(stack, refused.notification_id) == []


async def test_a_deferred_send_survives_a_restart_with_its_time(
    stack: Stack, parties: Parties
) -> None:
    # Last in the module: the service is restarted (the stack goes on with the new one).
    party_id = await parties.consented(quiet_hours=quiet_now())
    decision_id = decision()
    notification_id = f"offer-{decision_id}"
    await offer_taken(stack, party_id, decision_id)
    before = await stack.status_becomes(notification_id, STATUS.NOTIFICATION_STATUS_DEFERRED)

    await stack.restart_notifications()
    after = await stack.notification(notification_id)

    assert after.status == STATUS.NOTIFICATION_STATUS_DEFERRED
    assert after.deferred_until == before.deferred_until
    assert after.deferred_until.ToDatetime(tzinfo=dt.UTC) > dt.datetime.now(dt.UTC)
    assert sms_for(stack, notification_id) == []
