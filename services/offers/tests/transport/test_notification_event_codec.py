"""Notifications' NotificationSent and NotificationDelivered as offers read them (pure): the
channel in offers' names, and every bad field named with its message, never its value."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from zhike.notifications.v1 import events_pb2 as pb
from zhike.notifications.v1 import notifications_pb2
from zhike_offers.domain.model import MessageSent
from zhike_offers.transport.event_codec import message_sent
from zhike_runtime.events.consumer import PermanentEventError

AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
PARTY = str(uuid.UUID(int=7))
DECISION = str(uuid.UUID(int=8))


def stamp(value: dt.datetime = AT) -> Timestamp:
    found = Timestamp()
    found.FromDatetime(value)
    return found


def sent(**fields: object) -> pb.NotificationSent:
    values: dict[str, object] = {
        "notification_id": f"offer-{DECISION}",
        "party_id": PARTY,
        "channel": notifications_pb2.NOTIFICATION_CHANNEL_SMS,
        "category": notifications_pb2.NOTIFICATION_CATEGORY_MARKETING,
        "decision_id": DECISION,
        "offer_id": "usd_fx_wealth",
        "send_time": stamp(),
    } | fields
    return pb.NotificationSent(**values)  # type: ignore[arg-type]


def test_a_sent_message_reads_as_the_domain_names_it() -> None:
    assert message_sent(sent()) == MessageSent(
        f"offer-{DECISION}", PARTY, "sms", DECISION, "usd_fx_wealth", AT
    )


def test_a_delivered_inbox_message_without_offer_or_decision_is_read_in_the_app() -> None:
    delivered = pb.NotificationDelivered(
        notification_id=str(uuid.UUID(int=9)),
        party_id=PARTY,
        channel=notifications_pb2.NOTIFICATION_CHANNEL_INBOX,
        deliver_time=stamp(),
    )
    assert message_sent(delivered) == MessageSent(
        str(uuid.UUID(int=9)), PARTY, "mobile_app", "", "", AT
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"notification_id": ""}, "NotificationSent.notification_id"),
        ({"notification_id": "x" * 57}, "NotificationSent.notification_id"),
        ({"party_id": "not-a-party"}, "NotificationSent.party_id"),
        ({"channel": 0}, "NotificationSent.channel"),
        ({"channel": 99}, "NotificationSent.channel"),
        ({"decision_id": "d-1"}, "NotificationSent.decision_id"),
        ({"offer_id": "Not An Offer"}, "NotificationSent.offer_id"),
        ({"send_time": Timestamp()}, "NotificationSent.send_time"),
    ],
)
def test_a_bad_field_is_named_for_the_dead_letter(fields: dict[str, object], named: str) -> None:
    with pytest.raises(PermanentEventError, match=named):
        message_sent(sent(**fields))
