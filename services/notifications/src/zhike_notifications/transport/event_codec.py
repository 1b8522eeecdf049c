"""Events in (offers' OfferDecided, OfferWithdrawn and ContactPreferencesChanged, the profile's
ProfileChanged consents) and
out (NotificationSent/Delivered/Failed/Suppressed, ConsentWithdrawn): proto ↔ domain.

A malformed event in is `PermanentEventError` naming the field (the consumer dead-letters it);
events out carry ids and codes only (docs/events.md).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf.timestamp_pb2 import Timestamp

from zhike.notifications.v1 import commands_pb2
from zhike.notifications.v1 import events_pb2 as pb
from zhike.offers.v1 import events_pb2 as offers_events
from zhike.offers.v1 import offers_pb2
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.domain.gates import ConsentEvidence, ConsentRecord
from zhike_notifications.domain.model import Category, Channel, Notification, Purpose, Status
from zhike_notifications.domain.ports import (
    ConsentWithdrawnByCustomer,
    ContactPreferences,
    DecisionWithdrawal,
    OutboundEvent,
    SendingStopped,
    StatusChanged,
)
from zhike_notifications.domain.service import ConsentChange, OfferDecision, ProfileNews
from zhike_notifications.transport import codec
from zhike_runtime.events.consumer import PermanentEventError
from zhike_runtime.events.dead_letters import dead_letter_event
from zhike_runtime.events.decoding import event_time, malformed, platform_id, recent_event_time
from zhike_runtime.events.outbox import OutgoingEvent

SUBJECT_PREFIX = "zhike.notifications.v1"
SENT_SUBJECT = f"{SUBJECT_PREFIX}.notification_sent"
DELIVERED_SUBJECT = f"{SUBJECT_PREFIX}.notification_delivered"
FAILED_SUBJECT = f"{SUBJECT_PREFIX}.notification_failed"
SUPPRESSED_SUBJECT = f"{SUBJECT_PREFIX}.notification_suppressed"
CONSENT_WITHDRAWN_SUBJECT = f"{SUBJECT_PREFIX}.consent_withdrawn"
# RedispatchNotification: published only by `zhike dlq replay` of the letters that the durable
# below (which applies it) parks on zhike.dlq.notifications-dispatch.
REDISPATCH_SUBJECT = f"{SUBJECT_PREFIX}.redispatch"
DISPATCH_DURABLE = "notifications-dispatch"

OFFER_CHANNELS: Mapping[int, Channel] = MappingProxyType(
    {
        offers_pb2.CHANNEL_SMS: Channel.SMS,
        offers_pb2.CHANNEL_EMAIL: Channel.EMAIL,
        offers_pb2.CHANNEL_PUSH: Channel.PUSH,
    }
)
OFFER_CATEGORIES: Mapping[int, Category] = MappingProxyType(
    {
        offers_pb2.OFFER_CATEGORY_MARKETING: Category.MARKETING,
        offers_pb2.OFFER_CATEGORY_SERVICE: Category.SERVICE,
    }
)
# The profile's consent channels notifications sends on (phone calls and branches are not ours).
CONSENT_CHANNELS: Mapping[int, Channel] = MappingProxyType(
    {
        source_pb.CONTACT_CHANNEL_SMS: Channel.SMS,
        source_pb.CONTACT_CHANNEL_EMAIL: Channel.EMAIL,
        source_pb.CONTACT_CHANNEL_PUSH: Channel.PUSH,
    }
)
CONSENT_PURPOSES: Mapping[int, Purpose] = MappingProxyType(
    {
        source_pb.CONTACT_PURPOSE_MARKETING: Purpose.MARKETING,
        source_pb.CONTACT_PURPOSE_SERVICE: Purpose.SERVICE,
        source_pb.CONTACT_PURPOSE_RISK_ALERTS: Purpose.RISK_ALERTS,
    }
)
_MAX_ID = 64
# A decision's notification is "offer-<decision id>", at most 64 characters (storage's sizes),
# and its id is what providers deduplicate on: letters, digits, "_" and "-" only.
_MAX_DECISION_ID = 58
_CODE = re.compile(r"[A-Za-z0-9_.-]+")
_DECISION = re.compile(r"[A-Za-z0-9_-]+")


def _bad(event: str, field: str, why: str) -> PermanentEventError:
    return malformed(event, field, why)


def _time(stamp: Timestamp, event: str, field: str) -> dt.datetime:
    return event_time(stamp, event, field)


def _party_id(value: str, event: str, field: str) -> str:
    return platform_id(value, event, field, "a party id")


def _ident(
    value: str, event: str, field: str, longest: int = _MAX_ID, pattern: re.Pattern[str] = _CODE
) -> str:
    if not value or len(value) > longest or not pattern.fullmatch(value):
        raise _bad(event, field, "is missing or malformed")
    return value


# --- in ------------------------------------------------------------------------------------


def offer_decision(message: offers_events.OfferDecided) -> OfferDecision:
    name = "OfferDecided"
    if message.channel not in OFFER_CHANNELS:
        raise _bad(name, "channel", f"is not an outbound channel ({message.channel})")
    if message.category not in OFFER_CATEGORIES:
        raise _bad(name, "category", f"is not a known value ({message.category})")
    return OfferDecision(
        decision_id=_ident(message.decision_id, name, "decision_id", _MAX_DECISION_ID, _DECISION),
        party_id=_party_id(message.party_id, name, "party_id"),
        offer_id=_ident(message.offer_id, name, "offer_id"),
        channel=OFFER_CHANNELS[message.channel],
        template_id=_ident(message.template_id, name, "template_id"),
        category=OFFER_CATEGORIES[message.category],
        decided_at=_time(message.decide_time, name, "decide_time"),
        profile_version=max(message.profile_version, 0),
        offer_valid_until=(
            _time(message.offer_valid_until, name, "offer_valid_until")
            if message.HasField("offer_valid_until")
            else None
        ),
    )


def decision_withdrawal(message: offers_events.OfferWithdrawn) -> DecisionWithdrawal:
    name = "OfferWithdrawn"
    return DecisionWithdrawal(
        decision_id=_ident(message.decision_id, name, "decision_id", _MAX_DECISION_ID, _DECISION),
        party_id=_party_id(message.party_id, name, "party_id"),
        at=_time(message.withdraw_time, name, "withdraw_time"),
    )


def contact_preferences(message: offers_events.ContactPreferencesChanged) -> ContactPreferences:
    name = "ContactPreferencesChanged"
    if message.preferences_version < 1:
        raise _bad(name, "preferences_version", "must be 1 or more")
    channels = set()
    for index, number in enumerate(message.opted_out_channels):
        if number not in OFFER_CHANNELS:
            raise _bad(
                name, f"opted_out_channels[{index}]", f"is not an outbound channel ({number})"
            )
        channels.add(OFFER_CHANNELS[number])
    return ContactPreferences(
        party_id=_party_id(message.party_id, name, "party_id"),
        do_not_contact=message.do_not_contact,
        opted_out_channels=frozenset(channels),
        version=message.preferences_version,
        changed_at=_time(message.change_time, name, "change_time"),
    )


def redispatched(message: commands_pb2.RedispatchNotification) -> str:
    """The notification id a RedispatchNotification names."""
    return _ident(message.notification_id, "RedispatchNotification", "notification_id")


def profile_news(message: profile_events.ProfileChanged) -> ProfileNews:
    """The profile version and the consent decisions a ProfileChanged carries, on the channels
    notifications sends on (other facts are not notifications' business)."""
    name = "ProfileChanged"
    party_id = _party_id(message.party_id, name, "party_id")
    if message.profile_version < 1:
        raise _bad(name, "profile_version", "must be 1 or more")
    facts = [
        (index, fact.consent_changed)
        for index, fact in enumerate(message.facts)
        if fact.WhichOneof("fact") == "consent_changed"
    ]
    if not facts:
        return ProfileNews(party_id, message.profile_version)
    # The newest decision wins: one dated years ahead would outrank the customer's later
    # opt-out (a "TD" reply, an unsubscribe link), which would then do nothing.
    changed_at = recent_event_time(message.change_time, name, "change_time")
    changes = []
    for index, consent in facts:
        field = f"facts[{index}].consent_changed"
        if consent.purpose not in CONSENT_PURPOSES:
            raise _bad(name, f"{field}.purpose", f"is not a known value ({consent.purpose})")
        if consent.channel not in CONSENT_CHANNELS:
            continue  # a phone call or a branch visit: not a channel notifications sends on
        evidence = None
        if consent.HasField("evidence"):
            found = consent.evidence
            captured = (
                recent_event_time(found.capture_time, name, f"{field}.evidence.capture_time")
                if found.HasField("capture_time")
                else changed_at
            )
            evidence = ConsentEvidence(
                found.captured_where[:128], captured, found.text_version[:64]
            )
        record = ConsentRecord(
            CONSENT_CHANNELS[consent.channel],
            CONSENT_PURPOSES[consent.purpose],
            consent.given,
            evidence,
        )
        changes.append(ConsentChange(party_id, record, changed_at, message.profile_version))
    return ProfileNews(party_id, message.profile_version, tuple(changes))


# --- out -----------------------------------------------------------------------------------


def _status_event(n: Notification) -> OutgoingEvent:
    channel = codec.CHANNELS_OUT[n.channel]
    if n.status is Status.SENT:
        assert n.accepted is not None
        return OutgoingEvent(
            SENT_SUBJECT,
            pb.NotificationSent(
                notification_id=n.notification_id,
                party_id=n.party_id,
                channel=channel,
                category=codec.CATEGORIES_OUT[n.category],
                template_id=n.template_id,
                decision_id=n.decision_id,
                offer_id=n.offer_id,
                provider=n.accepted.provider,
                send_time=codec.stamp(n.accepted.at),
            ),
        )
    if n.status is Status.DELIVERED:
        return OutgoingEvent(
            DELIVERED_SUBJECT,
            pb.NotificationDelivered(
                notification_id=n.notification_id,
                party_id=n.party_id,
                channel=channel,
                decision_id=n.decision_id,
                offer_id=n.offer_id,
                deliver_time=codec.stamp(n.delivered_at),
            ),
        )
    if n.status is Status.FAILED:
        failed_at = (
            n.undelivered.at if n.undelivered else n.gave_up.at if n.gave_up else n.created_at
        )
        return OutgoingEvent(
            FAILED_SUBJECT,
            pb.NotificationFailed(
                notification_id=n.notification_id,
                party_id=n.party_id,
                channel=channel,
                decision_id=n.decision_id,
                offer_id=n.offer_id,
                failure=codec.failure_of(n),
                fail_time=codec.stamp(failed_at),
            ),
        )
    if n.status is Status.SUPPRESSED:
        assert n.suppression is not None
        return OutgoingEvent(
            SUPPRESSED_SUBJECT,
            pb.NotificationSuppressed(
                notification_id=n.notification_id,
                party_id=n.party_id,
                channel=channel,
                decision_id=n.decision_id,
                offer_id=n.offer_id,
                suppression=codec.suppression_message(n.suppression),
                # When the gate refused it: the event is staged in the same transaction.
                suppress_time=codec.stamp(dt.datetime.now(dt.UTC)),
            ),
        )
    raise ValueError(f"no event announces a {n.status.value} notification")


def outgoing_event(event: OutboundEvent) -> OutgoingEvent:
    if isinstance(event, StatusChanged):
        return _status_event(event.notification)
    if isinstance(event, SendingStopped):
        return dead_letter_event(
            DISPATCH_DURABLE,
            REDISPATCH_SUBJECT,
            commands_pb2.RedispatchNotification(notification_id=event.notification_id),
            deliveries=event.attempts,
            last_error=event.error,
        )
    assert isinstance(event, ConsentWithdrawnByCustomer)
    return OutgoingEvent(
        CONSENT_WITHDRAWN_SUBJECT,
        pb.ConsentWithdrawn(
            party_id=event.party_id,
            channel=codec.CHANNELS_OUT[event.channel],
            purpose=codec.PURPOSES_OUT[event.purpose],
            notification_id=event.notification_id,
            captured_where=event.evidence.captured_where,
            withdraw_time=codec.stamp(event.evidence.captured_at),
        ),
    )
