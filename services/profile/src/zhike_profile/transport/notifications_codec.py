"""Notifications' events (zhike.notifications.v1, stream ZHIKE_NOTIFICATIONS) → the profile's
domain: ConsentWithdrawn (a reply "TD"/"退订" or an unsubscribe link) and NotificationSent (the
contact history).

A malformed event is `PermanentEventError` naming the event and the field (the consumer
dead-letters it); the texts carry field names and codes only, never a value a customer gave.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf.timestamp_pb2 import Timestamp

from zhike.notifications.v1 import events_pb2 as pb
from zhike.notifications.v1 import notifications_pb2
from zhike_profile.domain.facts import (
    Channel,
    Consent,
    ConsentEvidence,
    MessageChannel,
    Purpose,
    SentMessage,
)
from zhike_runtime.events.consumer import PermanentEventError

SUBJECT_PREFIX = "zhike.notifications.v1"
CONSENT_WITHDRAWN_SUBJECT = f"{SUBJECT_PREFIX}.consent_withdrawn"
NOTIFICATION_SENT_SUBJECT = f"{SUBJECT_PREFIX}.notification_sent"

MESSAGE_CHANNELS: Mapping[notifications_pb2.NotificationChannel.ValueType, MessageChannel] = (
    MappingProxyType(
        {
            notifications_pb2.NOTIFICATION_CHANNEL_SMS: MessageChannel.SMS,
            notifications_pb2.NOTIFICATION_CHANNEL_EMAIL: MessageChannel.EMAIL,
            notifications_pb2.NOTIFICATION_CHANNEL_PUSH: MessageChannel.PUSH,
            notifications_pb2.NOTIFICATION_CHANNEL_INBOX: MessageChannel.INBOX,
        }
    )
)
MESSAGE_CHANNEL_NUMBERS: Mapping[
    MessageChannel, notifications_pb2.NotificationChannel.ValueType
] = MappingProxyType({channel: number for number, channel in MESSAGE_CHANNELS.items()})
# The channels a consent can be withdrawn for: the profile's contact channels. The in-app inbox
# has no consent of its own in the profile (nor does notifications ask for one).
CONSENT_CHANNELS: Mapping[int, Channel] = MappingProxyType(
    {
        notifications_pb2.NOTIFICATION_CHANNEL_SMS: Channel.SMS,
        notifications_pb2.NOTIFICATION_CHANNEL_EMAIL: Channel.EMAIL,
        notifications_pb2.NOTIFICATION_CHANNEL_PUSH: Channel.PUSH,
    }
)
CONSENT_PURPOSES: Mapping[int, Purpose] = MappingProxyType(
    {
        notifications_pb2.NOTIFICATION_PURPOSE_MARKETING: Purpose.MARKETING,
        notifications_pb2.NOTIFICATION_PURPOSE_SERVICE: Purpose.SERVICE,
        notifications_pb2.NOTIFICATION_PURPOSE_RISK_ALERTS: Purpose.RISK_ALERTS,
    }
)
# The consent table's and the interaction table's column sizes.
_MAX_WHERE = 100
_MAX_ID = 64


def _bad(event: str, field: str, why: str) -> PermanentEventError:
    return PermanentEventError(f"{event}.{field} {why}")


def _party_id(value: str, event: str) -> str:
    """A party id as the platform issues them: a canonical lower-case UUID (it keys the party's
    notifications record)."""
    if not value:
        raise _bad(event, "party_id", "is required")
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise _bad(event, "party_id", "is not a UUID") from None
    if canonical != value:
        raise _bad(event, "party_id", "is not a UUID in canonical lower-case form")
    return value


def _ident(value: str, event: str, field: str, *, required: bool = True) -> str:
    if not value:
        if required:
            raise _bad(event, field, "is required")
        return ""
    if len(value) > _MAX_ID:
        raise _bad(event, field, f"is longer than {_MAX_ID} characters")
    return value


def _time(stamp: Timestamp, present: bool, event: str, field: str) -> dt.datetime:
    if not present:
        raise _bad(event, field, "is required")
    try:
        return stamp.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise _bad(event, field, "is not a possible time") from None


def consent_withdrawal(message: pb.ConsentWithdrawn) -> tuple[str, str, Consent]:
    """(party id, notification id, the withdrawal with its evidence: where and when, no text
    version — the customer withdrew, he was shown no consent text)."""
    event = "ConsentWithdrawn"
    party_id = _party_id(message.party_id, event)
    channel = CONSENT_CHANNELS.get(message.channel)
    if channel is None:
        raise _bad(event, "channel", "is not a channel the profile keeps consent for")
    purpose = CONSENT_PURPOSES.get(message.purpose)
    if purpose is None:
        raise _bad(event, "purpose", "is not a purpose the profile keeps consent for")
    notification_id = _ident(message.notification_id, event, "notification_id")
    where = message.captured_where.strip()
    if not where:
        raise _bad(event, "captured_where", "is required")
    if len(where) > _MAX_WHERE:
        raise _bad(event, "captured_where", f"is longer than {_MAX_WHERE} characters")
    at = _time(message.withdraw_time, message.HasField("withdraw_time"), event, "withdraw_time")
    evidence = ConsentEvidence(captured_at=at, where=where, text_version="")
    return party_id, notification_id, Consent(channel, purpose, False, evidence)


def sent_message(message: pb.NotificationSent) -> tuple[str, SentMessage, dt.datetime]:
    """(party id, the message, when a provider accepted it)."""
    event = "NotificationSent"
    party_id = _party_id(message.party_id, event)
    notification_id = _ident(message.notification_id, event, "notification_id")
    channel = MESSAGE_CHANNELS.get(message.channel)
    if channel is None:
        raise _bad(event, "channel", "is not a channel notifications sends on")
    sent = SentMessage(
        notification_id=notification_id,
        channel=channel,
        template_id=_ident(message.template_id, event, "template_id", required=False),
        offer_id=_ident(message.offer_id, event, "offer_id", required=False),
        decision_id=_ident(message.decision_id, event, "decision_id", required=False),
    )
    at = _time(message.send_time, message.HasField("send_time"), event, "send_time")
    return party_id, sent, at
