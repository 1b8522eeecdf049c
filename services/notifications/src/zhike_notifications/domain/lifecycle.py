"""How a notification's status moves (pure).

Two kinds of event:

- Facts from outside, whose order nobody controls: send results (a provider accepted an attempt,
  or answered a transient or a permanent error), retries planned or given up, a message its
  template cannot render, delivery receipts (webhooks that may arrive before our own send result
  is committed), and the withdrawal of the offer decision. Each is merged into the record as a
  fact (the first acceptance, the earliest receipt, the highest attempt…), and the status is
  derived from the facts by precedence:

      DELIVERED > FAILED (undeliverable receipt) > SENT > FAILED (permanent error, retries
      exhausted, unrenderable) > SUPPRESSED > CANCELLED > DEFERRED / QUEUED

  so any order of the same facts, duplicates included, ends in the same record as in-order
  delivery: a late receipt never moves DELIVERED back to SENT, and a withdrawal cancels only what
  has not been sent (a send that raced a withdrawal is recorded as what it was).

- The gates' verdicts (`Deferred`, `Suppressed`), decided by reading the record: each names the
  version it was decided over and applies only to that version, and only while the notification
  waits for its first attempt or for a planned retry (the gates run again before a retry: quiet
  hours may have begun, consent been withdrawn). A deferred retry waits until the deferral's end;
  a refused one is SUPPRESSED, as a refused first attempt. A verdict over an older version is
  stale (say, a withdrawal came in between): the dispatcher reads again.

`apply` returns the record and whether it changed; `version` grows by one with each change.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TypeVar

from zhike_notifications.domain.model import (
    Acceptance,
    AttemptFailure,
    GiveUp,
    GiveUpReason,
    Notification,
    RetryPlan,
    Status,
    Suppression,
    Undelivered,
)

T = TypeVar("T", Acceptance, GiveUp, AttemptFailure, RetryPlan, Undelivered, dt.datetime)


class SendOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT_ERROR = "transient_error"
    PERMANENT_ERROR = "permanent_error"


class ReceiptKind(enum.StrEnum):
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # the provider gave up: a wrong number, a phone off for days


@dataclass(frozen=True)
class SendResult:
    attempt: int  # 1, 2, …
    provider: str
    outcome: SendOutcome
    at: dt.datetime
    provider_message_id: str = ""  # set when ACCEPTED
    error: str = ""  # the provider's error code when not ACCEPTED


@dataclass(frozen=True)
class RetryScheduled:
    attempt: int  # the attempt planned
    at: dt.datetime  # not before
    provider: str


@dataclass(frozen=True)
class RetriesExhausted:
    attempts: int
    error: str  # the last attempt's error code
    at: dt.datetime


@dataclass(frozen=True)
class Unrenderable:
    """The message cannot be rendered from its template and values: sending stops unasked."""

    attempts: int  # the attempts made before (0: none)
    error: str  # a code naming what failed, never a value
    at: dt.datetime


@dataclass(frozen=True)
class Receipt:
    kind: ReceiptKind
    at: dt.datetime
    error: str = ""
    provider_message_id: str = ""


@dataclass(frozen=True)
class Withdrawal:
    decision_id: str  # the withdrawn offer decision
    at: dt.datetime


@dataclass(frozen=True)
class Deferred:
    until: dt.datetime
    over_version: int  # the version the gates read


@dataclass(frozen=True)
class Suppressed:
    suppression: Suppression
    over_version: int


Fact = SendResult | RetryScheduled | RetriesExhausted | Unrenderable | Receipt | Withdrawal
Verdict = Deferred | Suppressed
Event = Fact | Verdict


@dataclass(frozen=True)
class Applied:
    notification: Notification
    changed: bool
    ignored: str = ""  # why a verdict was not applied (empty when it was, and for facts)


# Which status may follow which. Moves out of CANCELLED, SUPPRESSED and FAILED happen only when a
# send result or receipt shows that something did go out (a race with the withdrawal, the gates'
# verdict, or a timeout that was really an acceptance): the record follows what happened.
ALLOWED = MappingProxyType(
    {
        Status.QUEUED: frozenset(Status) - {Status.QUEUED},
        Status.DEFERRED: frozenset(Status) - {Status.DEFERRED},
        Status.CANCELLED: frozenset({Status.SENT, Status.DELIVERED, Status.FAILED}),
        Status.SUPPRESSED: frozenset({Status.SENT, Status.DELIVERED, Status.FAILED}),
        Status.SENT: frozenset({Status.DELIVERED, Status.FAILED}),
        Status.FAILED: frozenset({Status.SENT, Status.DELIVERED}),
        Status.DELIVERED: frozenset[Status](),
    }
)


def can_move(before: Status, after: Status) -> bool:
    return before is after or after in ALLOWED[before]


def status_of(notification: Notification) -> Status:
    n = notification
    if n.delivered_at is not None:
        return Status.DELIVERED
    if n.undelivered is not None:
        return Status.FAILED
    if n.accepted is not None:
        return Status.SENT
    if n.gave_up is not None:
        return Status.FAILED
    if n.suppression is not None:
        return Status.SUPPRESSED
    if n.withdrawn_by:
        return Status.CANCELLED
    if n.deferred_until is not None:
        if n.attempts == 0 and n.retry is None:
            return Status.DEFERRED
        # A retry the gates deferred is held past its planned time. A retry planned after a
        # deferral ran out (an attempt went out then, so later) is due at its own time.
        if n.retry is not None and n.deferred_until > n.retry.at:
            return Status.DEFERRED
    return Status.QUEUED


def apply(notification: Notification, event: Event) -> Applied:
    if isinstance(event, Deferred | Suppressed):
        return _verdict(notification, event)
    merged = _merge(notification, event)
    return _settle(notification, merged)


def _merge(n: Notification, event: Fact) -> Notification:
    match event:
        case SendResult():
            if event.attempt < 1:
                raise ValueError("attempt numbers start at 1")
            n = replace(n, attempts=max(n.attempts, event.attempt))
            if event.outcome is SendOutcome.ACCEPTED:
                accepted = Acceptance(
                    event.attempt, event.provider, event.provider_message_id, event.at
                )
                return replace(n, accepted=_first(n.accepted, accepted))
            failure = AttemptFailure(event.attempt, event.error)
            n = replace(n, last_failure=_last(n.last_failure, failure))
            if event.outcome is SendOutcome.PERMANENT_ERROR:
                gave_up = GiveUp(event.attempt, GiveUpReason.PERMANENT_ERROR, event.error, event.at)
                n = replace(n, gave_up=_first(n.gave_up, gave_up))
            return n
        case RetryScheduled():
            plan = RetryPlan(event.attempt, event.at, event.provider)
            return replace(n, retry=_last(n.retry, plan))
        case RetriesExhausted():
            gave_up = GiveUp(event.attempts, GiveUpReason.RETRIES_EXHAUSTED, event.error, event.at)
            return replace(
                n, attempts=max(n.attempts, event.attempts), gave_up=_first(n.gave_up, gave_up)
            )
        case Unrenderable():
            gave_up = GiveUp(event.attempts, GiveUpReason.UNRENDERABLE, event.error, event.at)
            return replace(
                n, attempts=max(n.attempts, event.attempts), gave_up=_first(n.gave_up, gave_up)
            )
        case Receipt(kind=ReceiptKind.DELIVERED):
            return replace(n, delivered_at=_first(n.delivered_at, event.at))
        case Receipt():
            return replace(n, undelivered=_first(n.undelivered, Undelivered(event.at, event.error)))
        case Withdrawal():
            if event.decision_id != n.decision_id:
                # Storage finds notifications by decision id: another id here is a bug upstream.
                raise ValueError("the withdrawal is of another decision than this notification's")
            return replace(n, withdrawn_by=event.decision_id)


def redispatch(n: Notification) -> Applied:
    """An operator's redispatch (a dead letter replayed) of a notification whose sending stopped
    before any provider accepted it (a permanent error, or retries exhausted): its send facts are
    cleared and it is QUEUED again, with a new version, for the gates to run again. The one move
    back from FAILED, and not a fact: anything else (sent, delivered, undeliverable by receipt,
    its decision withdrawn, not FAILED at all) is left as it is."""
    if n.status is not Status.FAILED or n.gave_up is None:
        return Applied(n, False, f"{n.status.value}: only a notification that failed to send")
    if n.accepted is not None or n.undelivered is not None or n.withdrawn_by:
        return Applied(n, False, "a provider accepted it, or its offer decision was withdrawn")
    queued = replace(
        n,
        attempts=0,
        retry=None,
        gave_up=None,
        last_failure=None,
        deferred_until=None,
        suppression=None,
    )
    return Applied(replace(queued, status=status_of(queued), version=n.version + 1), True)


def _verdict(n: Notification, verdict: Verdict) -> Applied:
    if verdict.over_version != n.version:
        return Applied(
            n, False, f"stale: decided over version {verdict.over_version}, now {n.version}"
        )
    if n.status not in (Status.QUEUED, Status.DEFERRED):
        return Applied(n, False, f"{n.status.value}, sending has begun or ended")
    if n.attempts and n.retry is None:
        return Applied(n, False, "an attempt failed and its retry is not planned yet")
    if isinstance(verdict, Deferred):
        merged = replace(n, deferred_until=verdict.until)
    else:
        merged = replace(n, suppression=verdict.suppression)
    return _settle(n, merged)


def _settle(before: Notification, merged: Notification) -> Applied:
    merged = replace(merged, status=status_of(merged), version=before.version)
    if merged == before:
        return Applied(before, False)
    if not can_move(before.status, merged.status):
        # Cannot happen: facts only accumulate and the precedence only climbs.
        raise RuntimeError(f"{before.status} → {merged.status} is not an allowed transition")
    return Applied(replace(merged, version=before.version + 1), True)


def _first(current: T | None, candidate: T) -> T:
    return candidate if current is None else min(current, candidate)


def _last(current: T | None, candidate: T) -> T:
    return candidate if current is None else max(current, candidate)
