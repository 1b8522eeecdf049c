"""Notifications' events reach the profile (`profile-notifications` on ZHIKE_NOTIFICATIONS):
identity and the profile in-process on one real nats-server, SQLite; the events published as
notifications' outbox relay publishes them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from zhike.identity.v1 import identity_service_pb2, party_pb2
from zhike.notifications.v1 import events_pb2 as notifications_pb
from zhike.notifications.v1 import notifications_pb2
from zhike.profile.v1 import events_pb2, profile_pb2, profile_service_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_runtime.events import headers as h
from zhike_runtime.ids import new_id
from zhike_runtime.testing.services import answer_or_none, eventually

from .identity_and_profile import Stack

PROFILE_STREAM = "ZHIKE_PROFILE"
DLQ_STREAM = "ZHIKE_DLQ"
CONSENT_WITHDRAWN_SUBJECT = "zhike.notifications.v1.consent_withdrawn"
NOTIFICATION_SENT_SUBJECT = "zhike.notifications.v1.notification_sent"
REPLY_AT = dt.datetime(2026, 11, 2, 12, 30, tzinfo=dt.UTC)


def js(stack: Stack) -> Any:
    return stack.profile_service.bus.js


def stamp(at: dt.datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at)
    return value


async def publish(stack: Stack, subject: str, message: Message, event_id: str = "") -> str:
    """As notifications' outbox relay publishes an event."""
    event_id = event_id or new_id()
    await js(stack).publish(
        subject,
        message.SerializeToString(),
        headers={
            h.MSG_ID: event_id,
            h.EVENT_ID: event_id,
            h.EVENT_TYPE: message.DESCRIPTOR.full_name,
            h.CONTENT_TYPE: h.PROTOBUF,
        },
    )
    return event_id


async def linked_party(stack: Stack) -> str:
    linked = await stack.identity.LinkSourceRecord(
        identity_service_pb2.LinkSourceRecordRequest(
            source_record=party_pb2.SourceRecord(
                key=party_pb2.SourceRecordKey(source_system="core", source_record_id="CIF-1"),
                full_name="刘晓燕",
            )
        ),
        timeout=5,
    )
    party_id: str = linked.party_id
    return party_id


def td_reply(party_id: str) -> notifications_pb.ConsentWithdrawn:
    return notifications_pb.ConsentWithdrawn(
        party_id=party_id,
        channel=notifications_pb2.NOTIFICATION_CHANNEL_SMS,
        purpose=notifications_pb2.NOTIFICATION_PURPOSE_MARKETING,
        notification_id=str(uuid.uuid4()),
        captured_where="sms reply",
        withdraw_time=stamp(REPLY_AT),
    )


def sent(party_id: str, notification_id: str) -> notifications_pb.NotificationSent:
    return notifications_pb.NotificationSent(
        notification_id=notification_id,
        party_id=party_id,
        channel=notifications_pb2.NOTIFICATION_CHANNEL_SMS,
        category=notifications_pb2.NOTIFICATION_CATEGORY_MARKETING,
        template_id="fx-usd-deposit",
        decision_id="decision-1",
        offer_id="fx-usd-deposit",
        provider="local_sms",
        send_time=stamp(REPLY_AT - dt.timedelta(hours=1)),
    )


async def consents(stack: Stack, party_id: str) -> list[profile_pb2.Consent]:
    response = await stack.profile.GetProfile(
        profile_service_pb2.GetProfileRequest(party_id=party_id), timeout=5
    )
    return list(response.profile.consents)


async def consents_shown(stack: Stack, party_id: str) -> bool:
    """Whether the profile shows a consent of the party yet; NOT_FOUND is "not yet" (neither
    identity's event nor notifications' has reached the profile)."""
    return bool(await answer_or_none(consents(stack, party_id)))


async def profile_changes(stack: Stack, party_id: str) -> list[events_pb2.ProfileChanged]:
    count = (await js(stack).stream_info(PROFILE_STREAM)).state.messages
    found = []
    for seq in range(1, count + 1):
        message = events_pb2.ProfileChanged.FromString(
            (await js(stack).get_msg(PROFILE_STREAM, seq=seq)).data
        )
        if message.party_id == party_id:
            found.append(message)
    return found


async def interactions(stack: Stack, party_id: str) -> list[profile_pb2.Interaction]:
    response = await stack.profile.ListInteractions(
        profile_service_pb2.ListInteractionsRequest(party_id=party_id), timeout=2
    )
    return list(response.interactions)


async def dead_letters(stack: Stack) -> list[Any]:
    count = (await js(stack).stream_info(DLQ_STREAM)).state.messages
    return [await js(stack).get_msg(DLQ_STREAM, seq=seq) for seq in range(1, count + 1)]


async def test_a_td_reply_withdraws_the_consent_in_the_profile_and_is_told_to_offers(
    stack: Stack,
) -> None:
    party_id = await linked_party(stack)

    await publish(stack, CONSENT_WITHDRAWN_SUBJECT, td_reply(party_id))

    async def withdrawn() -> bool:
        return await consents_shown(stack, party_id)

    await eventually(withdrawn, timeout=10)
    (held,) = await consents(stack, party_id)
    assert (held.channel, held.purpose, held.given) == (
        source_pb.CONTACT_CHANNEL_SMS,
        source_pb.CONTACT_PURPOSE_MARKETING,
        False,
    )
    assert held.evidence.captured_where == "sms reply"
    assert held.evidence.capture_time.ToDatetime(tzinfo=dt.UTC) == REPLY_AT
    assert held.evidence.text_version == ""

    async def told() -> bool:
        return any(
            f.HasField("consent_changed")
            for c in await profile_changes(stack, party_id)
            for f in c.facts
        )

    await eventually(told, timeout=10)
    (change,) = [
        c
        for c in await profile_changes(stack, party_id)
        if any(f.HasField("consent_changed") for f in c.facts)
    ]
    assert change.cause == events_pb2.CHANGE_CAUSE_NOTIFICATIONS
    (fact,) = [f.consent_changed for f in change.facts if f.HasField("consent_changed")]
    assert fact.given is False
    assert fact.evidence.captured_where == "sms reply"


async def test_a_sent_message_shows_once_in_the_contact_history(stack: Stack) -> None:
    party_id = await linked_party(stack)
    notification_id = str(uuid.uuid4())

    event_id = await publish(stack, NOTIFICATION_SENT_SUBJECT, sent(party_id, notification_id))
    await publish(stack, NOTIFICATION_SENT_SUBJECT, sent(party_id, notification_id), event_id)
    await publish(stack, NOTIFICATION_SENT_SUBJECT, sent(party_id, notification_id))
    # A later event behind them: once it shows, the three before it were applied.
    await publish(stack, CONSENT_WITHDRAWN_SUBJECT, td_reply(party_id))

    async def all_applied() -> bool:
        return await consents_shown(stack, party_id)

    await eventually(all_applied, timeout=10)
    (contact,) = await interactions(stack, party_id)
    assert contact.kind == source_pb.INTERACTION_KIND_MESSAGE_SENT
    assert contact.interaction_time.ToDatetime(tzinfo=dt.UTC) == REPLY_AT - dt.timedelta(hours=1)
    assert contact.message == profile_pb2.SentMessage(
        notification_id=notification_id,
        channel=notifications_pb2.NOTIFICATION_CHANNEL_SMS,
        template_id="fx-usd-deposit",
        offer_id="fx-usd-deposit",
        decision_id="decision-1",
    )
    assert not contact.HasField("source_record")


async def test_malformed_notifications_events_are_dead_lettered_naming_the_field(
    stack: Stack,
) -> None:
    party_id = await linked_party(stack)
    no_time = td_reply(party_id)
    no_time.ClearField("withdraw_time")
    inbox = td_reply(party_id)
    inbox.channel = notifications_pb2.NOTIFICATION_CHANNEL_INBOX
    not_a_party = sent("CIF-1", str(uuid.uuid4()))
    expected = {
        await publish(stack, CONSENT_WITHDRAWN_SUBJECT, no_time): "ConsentWithdrawn.withdraw_time",
        await publish(stack, CONSENT_WITHDRAWN_SUBJECT, inbox): "ConsentWithdrawn.channel",
        await publish(stack, NOTIFICATION_SENT_SUBJECT, not_a_party): "NotificationSent.party_id",
    }

    async def all_parked() -> bool:
        return len(await dead_letters(stack)) == len(expected)

    await eventually(all_parked, timeout=15)
    for letter in await dead_letters(stack):
        assert letter.headers[h.CONSUMER] == "profile-notifications"
        assert expected[letter.headers[h.EVENT_ID]] in letter.headers[h.LAST_ERROR]

    # The profile learns of the party from identity's events, at their own pace.
    async def profile_known() -> bool:
        return await answer_or_none(consents(stack, party_id)) is not None

    await eventually(profile_known, timeout=15)
    assert await consents(stack, party_id) == []
