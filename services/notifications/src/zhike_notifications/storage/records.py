"""Rows ↔ the domain's values: a `StoredNotification` as its `notification` row (every fact a
group of columns, NULL when the fact is not known) and back, the template values sealed under
the field keys (`zhike_runtime.crypto`), bound to their column and the notification's id."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from zhike_notifications.domain.gates import ConsentEvidence, ConsentRecord
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
from zhike_notifications.domain.ports import ConsentEntry, InboxEntry, Sending, StoredNotification
from zhike_notifications.storage.schema import INBOX_MESSAGE_SEALED, NOTIFICATION_SEALED
from zhike_runtime.crypto import KeyRing
from zhike_runtime.db import as_utc, optional_to_utc, to_utc

_VALUES = NOTIFICATION_SEALED.place("template_values")
_SUBJECT = INBOX_MESSAGE_SEALED.place("subject")
_BODY = INBOX_MESSAGE_SEALED.place("body")


def _read_time(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def due_at(stored: StoredNotification) -> dt.datetime | None:
    """When the dispatcher should look at it: the notification's due time; while an attempt is
    in flight and nothing else is due, the time it was handed over (the lease decides when
    another dispatcher may take it over and ask the same provider)."""
    due = stored.due_at()
    if due is None and stored.sending is not None:
        return stored.sending.started_at
    return due


def seal_values(ring: KeyRing, notification_id: str, values: Mapping[str, str]) -> str:
    if not values:
        return ""
    plain = json.dumps(dict(values), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return ring.encrypt(plain, _VALUES, (notification_id,))


def open_values(ring: KeyRing, notification_id: str, token: str) -> dict[str, str]:
    if not token:
        return {}
    values: dict[str, str] = json.loads(ring.decrypt(token, _VALUES, (notification_id,)))
    return values


def notification_row(stored: StoredNotification, ring: KeyRing) -> dict[str, Any]:
    """Every column of the `notification` row except `lease_until` (the dispatcher's)."""
    n, message, sending = stored.notification, stored.message, stored.sending
    return {
        "notification_id": n.notification_id,
        "party_id": message.party_id,
        "channel": message.channel.value,
        "category": message.category.value,
        "purpose": message.purpose.value,
        "template_id": message.template_id,
        "topic": message.topic,
        "offer_id": message.offer_id,
        "decision_id": message.decision_id,
        "send_before": optional_to_utc(message.send_before),
        "profile_version": stored.profile_version,
        "idempotency_key": stored.idempotency_key or None,
        "request_digest": stored.request_digest,
        "template_values": seal_values(ring, n.notification_id, stored.values),
        "language": stored.language,
        "status": n.status.value,
        "version": n.version,
        "created_at": to_utc(n.created_at),
        "due_at": optional_to_utc(due_at(stored)),
        "sending_attempt": sending.attempt if sending else None,
        "sending_provider": sending.provider if sending else None,
        "sending_started_at": to_utc(sending.started_at) if sending else None,
        "pinned_provider": stored.pinned_provider,
        "deferred_until": optional_to_utc(n.deferred_until),
        "suppression_reason": n.suppression.reason.value if n.suppression else None,
        "suppression_detail": n.suppression.detail if n.suppression else None,
        "withdrawn_by": n.withdrawn_by,
        "attempts": n.attempts,
        "retry_attempt": n.retry.attempt if n.retry else None,
        "retry_at": to_utc(n.retry.at) if n.retry else None,
        "retry_provider": n.retry.provider if n.retry else None,
        "accepted_attempt": n.accepted.attempt if n.accepted else None,
        "accepted_provider": n.accepted.provider if n.accepted else None,
        "accepted_provider_message_id": n.accepted.provider_message_id if n.accepted else None,
        "accepted_at": to_utc(n.accepted.at) if n.accepted else None,
        "gave_up_attempt": n.gave_up.attempt if n.gave_up else None,
        "gave_up_reason": n.gave_up.reason.value if n.gave_up else None,
        "gave_up_error": n.gave_up.error if n.gave_up else None,
        "gave_up_at": to_utc(n.gave_up.at) if n.gave_up else None,
        "last_failure_attempt": n.last_failure.attempt if n.last_failure else None,
        "last_failure_error": n.last_failure.error if n.last_failure else None,
        "delivered_at": optional_to_utc(n.delivered_at),
        "undelivered_at": to_utc(n.undelivered.at) if n.undelivered else None,
        "undelivered_error": n.undelivered.error if n.undelivered else None,
    }


def message_of(row: Any) -> Message:
    return Message(
        party_id=row.party_id,
        channel=Channel(row.channel),
        category=Category(row.category),
        purpose=Purpose(row.purpose),
        template_id=row.template_id,
        topic=row.topic,
        offer_id=row.offer_id,
        decision_id=row.decision_id,
        send_before=_read_time(row.send_before),
    )


def notification_of(row: Any) -> Notification:
    return Notification(
        notification_id=row.notification_id,
        party_id=row.party_id,
        channel=Channel(row.channel),
        category=Category(row.category),
        template_id=row.template_id,
        created_at=as_utc(row.created_at),
        decision_id=row.decision_id,
        offer_id=row.offer_id,
        status=Status(row.status),
        version=int(row.version),
        deferred_until=_read_time(row.deferred_until),
        suppression=(
            None
            if row.suppression_reason is None
            else Suppression(SuppressionReason(row.suppression_reason), row.suppression_detail)
        ),
        withdrawn_by=row.withdrawn_by,
        attempts=int(row.attempts),
        retry=(
            None
            if row.retry_attempt is None
            else RetryPlan(int(row.retry_attempt), as_utc(row.retry_at), row.retry_provider)
        ),
        accepted=(
            None
            if row.accepted_attempt is None
            else Acceptance(
                int(row.accepted_attempt),
                row.accepted_provider,
                row.accepted_provider_message_id,
                as_utc(row.accepted_at),
            )
        ),
        gave_up=(
            None
            if row.gave_up_attempt is None
            else GiveUp(
                int(row.gave_up_attempt),
                GiveUpReason(row.gave_up_reason),
                row.gave_up_error,
                as_utc(row.gave_up_at),
            )
        ),
        last_failure=(
            None
            if row.last_failure_attempt is None
            else AttemptFailure(int(row.last_failure_attempt), row.last_failure_error)
        ),
        delivered_at=_read_time(row.delivered_at),
        undelivered=(
            None
            if row.undelivered_at is None
            else Undelivered(as_utc(row.undelivered_at), row.undelivered_error)
        ),
    )


def stored_of(row: Any, ring: KeyRing) -> StoredNotification:
    return StoredNotification(
        notification=notification_of(row),
        message=message_of(row),
        values=open_values(ring, row.notification_id, row.template_values),
        idempotency_key=row.idempotency_key or "",
        request_digest=row.request_digest,
        profile_version=int(row.profile_version),
        sending=(
            None
            if row.sending_attempt is None
            else Sending(
                int(row.sending_attempt), row.sending_provider, as_utc(row.sending_started_at)
            )
        ),
        language=row.language,
        pinned_provider=row.pinned_provider,
    )


# --- consents ---------------------------------------------------------------------------------


def consent_row(entry: ConsentEntry) -> dict[str, Any]:
    record, evidence = entry.record, entry.record.evidence
    return {
        "party_id": entry.party_id,
        "channel": record.channel.value,
        "purpose": record.purpose.value,
        "given": record.given,
        "captured_where": evidence.captured_where if evidence else None,
        "captured_at": to_utc(evidence.captured_at) if evidence else None,
        "text_version": evidence.text_version if evidence else None,
        "decided_at": to_utc(entry.decided_at),
        "profile_version": entry.profile_version,
    }


def consent_of(row: Any) -> ConsentEntry:
    evidence = (
        None
        if row.captured_at is None
        else ConsentEvidence(row.captured_where, as_utc(row.captured_at), row.text_version)
    )
    return ConsentEntry(
        party_id=row.party_id,
        record=ConsentRecord(Channel(row.channel), Purpose(row.purpose), bool(row.given), evidence),
        decided_at=as_utc(row.decided_at),
        profile_version=int(row.profile_version),
    )


# --- the inbox --------------------------------------------------------------------------------


def inbox_row(entry: InboxEntry, ring: KeyRing) -> dict[str, Any]:
    place = (entry.notification_id,)
    return {
        "notification_id": entry.notification_id,
        "party_id": entry.party_id,
        "template_id": entry.template_id,
        "language": entry.language,
        "subject": ring.encrypt(entry.subject, _SUBJECT, place),
        "body": ring.encrypt(entry.body, _BODY, place),
        "created_at": to_utc(entry.created_at),
        "read_at": optional_to_utc(entry.read_at),
    }


def inbox_of(row: Any, ring: KeyRing) -> InboxEntry:
    place = (row.notification_id,)
    return InboxEntry(
        notification_id=row.notification_id,
        party_id=row.party_id,
        template_id=row.template_id,
        language=row.language,
        subject=ring.decrypt(row.subject, _SUBJECT, place),
        body=ring.decrypt(row.body, _BODY, place),
        created_at=as_utc(row.created_at),
        read_at=_read_time(row.read_at),
    )
