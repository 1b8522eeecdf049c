"""Events ↔ domain: the profile's ProfileChanged and notifications' NotificationSent and
NotificationDelivered in, OfferDecided and OfferWithdrawn out.

An event that cannot be read (a field missing or out of range) raises `PermanentEventError`
naming the message and the field, never its value: the consumer dead-letters it. Enum numbers
map through tables; one a table does not know is refused, never guessed.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from zhike.notifications.v1 import events_pb2 as notification_events
from zhike.notifications.v1 import notifications_pb2
from zhike.offers.v1 import events_pb2 as offers_events
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_offers.domain.facts import Holding
from zhike_offers.domain.model import (
    MessageSent,
    OfferDecidedEvent,
    OfferWithdrawnEvent,
    OutboundEvent,
    PreferencesChangedEvent,
)
from zhike_offers.domain.projection import (
    AgeFact,
    BalanceFact,
    ConsentFact,
    Fact,
    HoldingFact,
    ProfileChange,
    RiskFact,
    SegmentFact,
    TierFact,
    ValueBandFact,
)
from zhike_offers.transport import codec
from zhike_runtime.events.consumer import PermanentEventError
from zhike_runtime.events.decoding import event_time, malformed, platform_id
from zhike_runtime.events.outbox import OutgoingEvent

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "zhike.offers.v1"
OFFER_DECIDED_SUBJECT = f"{SUBJECT_PREFIX}.offer_decided"
OFFER_WITHDRAWN_SUBJECT = f"{SUBJECT_PREFIX}.offer_withdrawn"
PREFERENCES_CHANGED_SUBJECT = f"{SUBJECT_PREFIX}.contact_preferences_changed"

_CURRENCY = re.compile(r"[A-Z]{3}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_TEXT = 128
# Whole years a customer can be: anything else is a broken birth date, never a person.
_AGES = range(0, 151)

T = TypeVar("T")


def _suffix_names(enum: object, prefix: str) -> Mapping[int, str]:
    """An enum's values by number as lower-case names without their prefix, 0 left out:
    PRODUCT_LINE_CREDIT_CARD → "credit_card" (the names the offer rules use)."""
    values = enum.DESCRIPTOR.values  # type: ignore[attr-defined]
    return MappingProxyType(
        {v.number: v.name.removeprefix(prefix).lower() for v in values if v.number != 0}
    )


PRODUCT_LINES = _suffix_names(source_pb.ProductLine, "PRODUCT_LINE_")
CONTACT_CHANNELS = _suffix_names(source_pb.ContactChannel, "CONTACT_CHANNEL_")
CONTACT_PURPOSES = _suffix_names(source_pb.ContactPurpose, "CONTACT_PURPOSE_")
CUSTOMER_RISKS: Mapping[int, int] = MappingProxyType(
    {
        source_pb.CUSTOMER_RISK_UNSPECIFIED: 0,  # none: never assessed, or expired
        source_pb.CUSTOMER_RISK_C1: 1,
        source_pb.CUSTOMER_RISK_C2: 2,
        source_pb.CUSTOMER_RISK_C3: 3,
        source_pb.CUSTOMER_RISK_C4: 4,
        source_pb.CUSTOMER_RISK_C5: 5,
    }
)
SIDES: Mapping[int, bool] = MappingProxyType(
    {
        profile_events.BALANCE_SIDE_ASSETS: False,
        profile_events.BALANCE_SIDE_LIABILITIES: True,
    }
)


# --- ProfileChanged in ------------------------------------------------------------------------


def _bad(field: str, why: str, event: str = "ProfileChanged") -> PermanentEventError:
    return malformed(event, field, why)


def _enum(table: Mapping[int, T], number: int, field: str) -> T:
    if number not in table:
        raise _bad(field, f"is not a known value ({number})")
    return table[number]


def _text(value: str, field: str, pattern: re.Pattern[str] | None = None) -> str:
    if (
        not value
        or len(value) > _MAX_TEXT
        or (pattern is not None and not pattern.fullmatch(value))
    ):
        raise _bad(field, "is missing or malformed")
    return value


def _date(value: date_pb2.Date, field: str) -> dt.date | None:
    if not value.year and not value.month and not value.day:
        return None
    try:
        return dt.date(value.year, value.month, value.day)
    except ValueError:
        raise _bad(field, "is not a date") from None


def _fact(message: profile_events.ProfileFact, field: str) -> Fact | None:
    """The fact, or None for one of a kind this release does not know."""
    kind = message.WhichOneof("fact")
    if kind == "balance_changed":
        balance = message.balance_changed
        return BalanceFact(
            _text(balance.currency_code, f"{field}.balance_changed.currency_code", _CURRENCY),
            _enum(SIDES, balance.side, f"{field}.balance_changed.side"),
            balance.after_minor_units,
        )
    if kind in ("holding_opened", "holding_closed"):
        holding = message.holding_opened if kind == "holding_opened" else message.holding_closed
        at = f"{field}.{kind}"
        currency = _text(holding.currency_code, f"{at}.currency_code", _CURRENCY)
        return HoldingFact(
            _text(holding.source_record.source_system, f"{at}.source_record.source_system"),
            _text(holding.source_record.source_record_id, f"{at}.source_record.source_record_id"),
            _text(holding.account_id, f"{at}.account_id"),
            Holding(
                _enum(PRODUCT_LINES, holding.product_line, f"{at}.product_line"),
                holding.product_code[:_MAX_TEXT],
                currency,
            ),
            open=kind == "holding_opened",
        )
    if kind == "tier_changed":
        return TierFact(message.tier_changed.after[:_MAX_TEXT])
    if kind == "value_band_changed":
        return ValueBandFact(message.value_band_changed.after[:_MAX_TEXT])
    if kind in ("segment_entered", "segment_left"):
        segment = message.segment_entered if kind == "segment_entered" else message.segment_left
        name = _text(segment.segment, f"{field}.{kind}.segment", _NAME)
        return SegmentFact(name, member=kind == "segment_entered")
    if kind == "consent_changed":
        consent = message.consent_changed
        return ConsentFact(
            _enum(CONTACT_CHANNELS, consent.channel, f"{field}.consent_changed.channel"),
            _enum(CONTACT_PURPOSES, consent.purpose, f"{field}.consent_changed.purpose"),
            consent.given,
        )
    if kind == "risk_level_changed":
        risk = message.risk_level_changed
        level = _enum(CUSTOMER_RISKS, risk.after, f"{field}.risk_level_changed.after")
        return RiskFact(level, _date(risk.expire_date, f"{field}.risk_level_changed.expire_date"))
    if kind == "risk_assessment_expired":
        expired = message.risk_assessment_expired
        level = _enum(
            CUSTOMER_RISKS, expired.customer_risk, f"{field}.risk_assessment_expired.customer_risk"
        )
        expires = _date(expired.expire_date, f"{field}.risk_assessment_expired.expire_date")
        return RiskFact(level, expires, expired=True)
    if kind == "age_changed":
        age = message.age_changed
        if not age.HasField("after_years") or age.after_years not in _AGES:
            # The birth date left the party, or gives no age a person has: not known (a rule
            # reading `age` sees -1). Refusing the change would dead-letter its other facts.
            return AgeFact(None)
        return AgeFact(age.after_years)
    # A newer profile's kind of fact: skipped, and the change's other facts apply. Refusing it
    # would dead-letter every party's changes until offers is upgraded too; no rule of this
    # release can read it anyway (RELIABILITY.md: unknown fields are ignored). Told once per
    # process: every change may hold one until offers is upgraded.
    _tell_unknown_fact()
    return None


@functools.cache
def _tell_unknown_fact() -> None:
    log.warning(
        "ProfileChanged holds a kind of fact this release does not know: skipped "
        "(upgrade offers to read it)"
    )


def _time(stamp: Timestamp, field: str, event: str = "ProfileChanged") -> dt.datetime:
    return event_time(stamp, event, field)


def _uuid(value: str, field: str, what: str, event: str) -> str:
    return platform_id(value, event, field, what)


def _party_id(value: str, field: str, event: str = "ProfileChanged") -> str:
    return platform_id(value, event, field, "a party id")


def profile_change(message: profile_events.ProfileChanged) -> ProfileChange:
    """A ProfileChanged as the domain reads it; PermanentEventError names a bad field."""
    if message.profile_version < 1:
        raise _bad("profile_version", "must be 1 or more")
    if message.merged_into_party_id and message.merged_into_party_id == message.party_id:
        # Merged into itself, a party would forward to itself and never be decided for again.
        raise _bad("merged_into_party_id", "names the party itself")
    if message.forwarding_ended and not message.merged_into_party_id:
        # Its contacts would count for no one.
        raise _bad("merged_into_party_id", "must name the party kept when forwarding_ended is set")
    return ProfileChange(
        party_id=_party_id(message.party_id, "party_id"),
        profile_version=message.profile_version,
        at=_time(message.change_time, "change_time"),
        facts=tuple(
            fact
            for i, told in enumerate(message.facts)
            if (fact := _fact(told, f"facts[{i}]")) is not None
        ),
        merged_into=(
            _party_id(message.merged_into_party_id, "merged_into_party_id")
            if message.merged_into_party_id
            else ""
        ),
        forwarding_ended=message.forwarding_ended,
    )


# --- NotificationSent, NotificationDelivered in ------------------------------------------------

NOTIFICATION_SUBJECT_PREFIX = "zhike.notifications.v1"
NOTIFICATION_SENT_SUBJECT = f"{NOTIFICATION_SUBJECT_PREFIX}.notification_sent"
NOTIFICATION_DELIVERED_SUBJECT = f"{NOTIFICATION_SUBJECT_PREFIX}.notification_delivered"
# Notifications' channels as offers name them: an inbox message is read in the app.
NOTIFICATION_CHANNELS: Mapping[int, str] = MappingProxyType(
    {
        notifications_pb2.NOTIFICATION_CHANNEL_SMS: "sms",
        notifications_pb2.NOTIFICATION_CHANNEL_EMAIL: "email",
        notifications_pb2.NOTIFICATION_CHANNEL_PUSH: "push",
        notifications_pb2.NOTIFICATION_CHANNEL_INBOX: "mobile_app",
    }
)
_OFFER_ID = re.compile(r"[a-z0-9_-]{3,64}")
# Notifications' ids are a UUID, or "offer-<decision id>" for an offer's message; bounded so
# that "message:<id>" fits the contact's key.
_NOTIFICATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,55}")


def message_sent(
    message: notification_events.NotificationSent | notification_events.NotificationDelivered,
) -> MessageSent:
    """A NotificationSent or NotificationDelivered as the domain reads it; PermanentEventError
    names a bad field."""
    event = message.DESCRIPTOR.name
    if isinstance(message, notification_events.NotificationSent):
        at = _time(message.send_time, "send_time", event)
    else:
        at = _time(message.deliver_time, "deliver_time", event)
    if message.channel not in NOTIFICATION_CHANNELS:
        raise _bad("channel", f"is not a known value ({message.channel})", event)
    if not _NOTIFICATION_ID.fullmatch(message.notification_id):
        raise _bad("notification_id", "is missing or malformed", event)
    if message.offer_id and not _OFFER_ID.fullmatch(message.offer_id):
        raise _bad("offer_id", "is not an offer id", event)
    return MessageSent(
        notification_id=message.notification_id,
        party_id=_party_id(message.party_id, "party_id", event),
        channel=NOTIFICATION_CHANNELS[message.channel],
        decision_id=(
            _uuid(message.decision_id, "decision_id", "a decision id", event)
            if message.decision_id
            else ""
        ),
        offer_id=message.offer_id,
        at=at,
    )


# --- OfferDecided, OfferWithdrawn out ---------------------------------------------------------


def offer_decided(event: OfferDecidedEvent) -> offers_events.OfferDecided:
    decided = event.decision
    return offers_events.OfferDecided(
        decision_id=decided.decision_id,
        party_id=decided.party_id,
        offer_id=decided.offer_id,
        offer_version=decided.offer_version,
        channel=codec.channel_number(decided.channel),
        template_id=decided.template_id,
        category=codec.category_number(event.category),
        decide_time=codec.timestamp(decided.decided_at),
        profile_version=event.profile_version,
        offer_valid_until=(
            None if event.valid_until is None else codec.timestamp(event.valid_until)
        ),
    )


def offer_withdrawn(event: OfferWithdrawnEvent) -> offers_events.OfferWithdrawn:
    gone = event.withdrawn
    return offers_events.OfferWithdrawn(
        decision_id=gone.decision_id,
        party_id=event.party_id,
        offer_id=gone.offer_id,
        reason=codec.withdraw_reason(gone.why),
        detail=gone.why.explanation,
        withdraw_time=codec.timestamp(gone.at),
        offer_version=gone.offer_version,
        profile_version=event.profile_version,
    )


def preferences_changed(
    event: PreferencesChangedEvent,
) -> offers_events.ContactPreferencesChanged:
    held = event.preferences
    assert held.updated_at is not None  # only a change is announced
    return offers_events.ContactPreferencesChanged(
        party_id=held.party_id,
        do_not_contact=held.do_not_contact,
        personalised_offers=held.personalised_offers,
        opted_out_channels=codec.channel_numbers(held.opted_out_channels),
        preferences_version=held.version,
        change_time=codec.timestamp(held.updated_at),
    )


def outgoing_event(event: OutboundEvent) -> OutgoingEvent:
    if isinstance(event, OfferDecidedEvent):
        return OutgoingEvent(OFFER_DECIDED_SUBJECT, offer_decided(event))
    if isinstance(event, PreferencesChangedEvent):
        return OutgoingEvent(PREFERENCES_CHANGED_SUBJECT, preferences_changed(event))
    return OutgoingEvent(OFFER_WITHDRAWN_SUBJECT, offer_withdrawn(event))
