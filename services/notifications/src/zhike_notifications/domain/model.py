"""What the notifications domain talks about (pure values; the transport maps them to and from
the contract, storage keeps them).

A `Message` is what is asked for (from an `OfferDecided`, or a `SendNotification` call); a
`Notification` is its record, whose status `lifecycle.apply` moves as facts arrive.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from zhike_runtime.validation import Violations

# A provider's own error word (a send's answer, a delivery receipt) is kept only when it is a
# plain code: a provider that echoes the request back in its error must not put the number or
# the text into our records, events or answers.
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,47}")
# Six digits or more, even broken by separators, are a phone, account or ID number glued to a
# code (UNDELIV_13912345678), never a code's own number (MK:100D, E012).
_NUMBER_IN_CODE = re.compile(r"\d(?:[_.-]?\d){5}")
# What is kept of an error that is not a plain code.
ERROR_TEXT_WITHHELD = "provider_text_withheld"


def is_error_code(text: str) -> bool:
    return bool(_ERROR_CODE.fullmatch(text)) and not _NUMBER_IN_CODE.search(text)


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"
    # The in-app inbox: read when the customer opens the app, it never alerts him, so it needs no
    # channel consent and no quiet hours (offers treats its app placements the same way). It
    # still counts toward the frequency cap.
    INBOX = "inbox"

    @property
    def outbound(self) -> bool:
        """Reaches the customer unasked: consent to the channel and quiet hours apply."""
        return self is not Channel.INBOX


class Category(enum.StrEnum):
    MARKETING = "marketing"  # offers; every gate applies
    SERVICE = "service"  # "your deposit matures next week": consent to the channel, quiet hours
    TRANSACTIONAL = "transactional"  # a one-time passcode, a fraud alert: at once


class Purpose(enum.StrEnum):
    """The purpose a consent is given or refused for (profile's ContactPurpose)."""

    MARKETING = "marketing"
    SERVICE = "service"
    RISK_ALERTS = "risk_alerts"


# The purposes a message of each category may be sent for; the first is the default.
PURPOSES: dict[Category, tuple[Purpose, ...]] = {
    Category.MARKETING: (Purpose.MARKETING,),
    Category.SERVICE: (Purpose.SERVICE, Purpose.RISK_ALERTS),
    Category.TRANSACTIONAL: (Purpose.SERVICE, Purpose.RISK_ALERTS),
}


class Status(enum.StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"  # until `deferred_until` (quiet hours, marketing window)
    SENT = "sent"  # a provider accepted it
    DELIVERED = "delivered"  # the provider's receipt says it reached the customer
    FAILED = "failed"  # a permanent error, retries exhausted, or an undeliverable receipt
    SUPPRESSED = "suppressed"  # a gate refused it (`suppression` says which and why)
    CANCELLED = "cancelled"  # its offer decision was withdrawn before it was sent


class SuppressionReason(enum.StrEnum):
    NO_CONSENT = "no_consent"  # no record (silence), or consent refused or withdrawn
    CONSENT_WITHOUT_EVIDENCE = "consent_without_evidence"
    # The consent text does not state this type of message or a frequency, or the frequency it
    # states is used up.
    CONSENT_SCOPE = "consent_scope"
    DO_NOT_CONTACT = "do_not_contact"
    CHANNEL_OPTED_OUT = "channel_opted_out"
    DUPLICATE_CONTENT = "duplicate_content"  # the same offer or content within the dedup window
    FREQUENCY_CAP = "frequency_cap"
    # The customer's quiet hours leave no time in the marketing window (defer would be forever).
    NO_SEND_WINDOW = "no_send_window"
    # Identity knows no address of the party on the channel (no phone for SMS, no e-mail).
    NO_ADDRESS = "no_address"


@dataclass(frozen=True)
class Suppression:
    reason: SuppressionReason
    detail: str  # names the rule and its numbers, never the customer's data


@dataclass(frozen=True)
class Message:
    """A message asked for, as the gates see it."""

    party_id: str
    channel: Channel
    category: Category
    purpose: Purpose
    template_id: str
    # The type of message the template declares ("wealth", "cards"…): what a marketing SMS
    # consent must state.
    topic: str = ""
    offer_id: str = ""  # set for offers: content dedup is per offer across channels
    decision_id: str = ""  # the offer decision it delivers; its withdrawal cancels it
    # When the offer closes (None: it does not, or not an offer's): never sent from then on.
    send_before: dt.datetime | None = None

    @property
    def content_key(self) -> str:
        """What content dedup compares: the offer, else the template."""
        return f"offer:{self.offer_id}" if self.offer_id else f"template:{self.template_id}"


def message_purpose(category: Category, purpose: Purpose | None, field: str = "purpose") -> Purpose:
    """The purpose a message is sent for: the category's default when none is asked; a purpose
    the category does not allow is INVALID_ARGUMENT naming `field`."""
    allowed = PURPOSES[category]
    if purpose is None:
        return allowed[0]
    if purpose not in allowed:
        violations = Violations()
        violations.add(
            field,
            f"{purpose.value} is not a purpose for {category.value} messages; "
            f"allowed: {', '.join(p.value for p in allowed)}",
        )
        violations.raise_if_any()
    return purpose


# --- the notification record ---------------------------------------------------------------


class GiveUpReason(enum.StrEnum):
    PERMANENT_ERROR = "permanent_error"  # the provider said it can never be sent
    RETRIES_EXHAUSTED = "retries_exhausted"
    # Its template cannot render it (a declared field without a value, the template gone): no
    # provider was asked, and none ever could be.
    UNRENDERABLE = "unrenderable"


@dataclass(frozen=True, order=True)
class Acceptance:
    """A provider accepted an attempt: what makes a notification SENT."""

    attempt: int
    provider: str
    provider_message_id: str
    at: dt.datetime


@dataclass(frozen=True, order=True)
class GiveUp:
    """Sending stopped before any provider accepted: FAILED."""

    attempt: int
    reason: GiveUpReason
    error: str  # the provider's error code, never the message or the address
    at: dt.datetime


@dataclass(frozen=True, order=True)
class AttemptFailure:
    attempt: int
    error: str


@dataclass(frozen=True, order=True)
class RetryPlan:
    """The next attempt after a transient error: its number, when, and through which provider
    (failover goes through the configured providers in order)."""

    attempt: int
    at: dt.datetime
    provider: str


@dataclass(frozen=True, order=True)
class Undelivered:
    """The provider's receipt: accepted, but it never reached the customer."""

    at: dt.datetime
    error: str


@dataclass(frozen=True)
class Notification:
    """A notification and every fact known about it. The status is derived from the facts
    (`lifecycle.status_of`), so facts arriving in any order give the same record; `version`
    counts the changes (storage compares it to write only over what it read)."""

    notification_id: str
    party_id: str
    channel: Channel
    category: Category
    template_id: str
    created_at: dt.datetime
    decision_id: str = ""
    offer_id: str = ""
    status: Status = Status.QUEUED
    version: int = 1
    deferred_until: dt.datetime | None = None
    suppression: Suppression | None = None
    withdrawn_by: str = ""  # the withdrawn decision's id, whenever the withdrawal arrived
    attempts: int = 0  # the highest attempt a send result is known for
    retry: RetryPlan | None = None  # the latest retry planned (None: none yet)
    accepted: Acceptance | None = None  # the first attempt a provider accepted
    gave_up: GiveUp | None = None
    last_failure: AttemptFailure | None = None  # of the highest failed attempt
    delivered_at: dt.datetime | None = None
    undelivered: Undelivered | None = None

    @property
    def cancelled_by(self) -> str:
        """The withdrawal decision id that cancelled it (empty unless CANCELLED)."""
        return self.withdrawn_by if self.status is Status.CANCELLED else ""

    @property
    def sent_at(self) -> dt.datetime | None:
        return self.accepted.at if self.accepted else None

    @property
    def next_attempt(self) -> int:
        return self.retry.attempt if self.retry else self.attempts + 1

    def due_at(self) -> dt.datetime | None:
        """When the dispatcher should next look at it; None when nothing more is to be sent."""
        if self.status is Status.DEFERRED:
            return self.deferred_until
        if self.status is Status.QUEUED:
            return self.retry.at if self.retry else self.created_at
        return None
