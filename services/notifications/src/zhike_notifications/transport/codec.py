"""The gRPC contract ↔ the domain: requests decoded (unknown enum values named as the field),
notifications and inbox messages encoded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf.timestamp_pb2 import Timestamp

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.notifications.v1 import notifications_service_pb2 as pb
from zhike_notifications.domain.model import (
    Category,
    Channel,
    Notification,
    Purpose,
    Status,
    Suppression,
    SuppressionReason,
)
from zhike_notifications.domain.ports import InboxEntry
from zhike_notifications.domain.service import SendRequest
from zhike_runtime.validation import Violations

CHANNELS_OUT: Mapping[Channel, model_pb.NotificationChannel.ValueType] = MappingProxyType(
    {
        Channel.SMS: model_pb.NOTIFICATION_CHANNEL_SMS,
        Channel.EMAIL: model_pb.NOTIFICATION_CHANNEL_EMAIL,
        Channel.PUSH: model_pb.NOTIFICATION_CHANNEL_PUSH,
        Channel.INBOX: model_pb.NOTIFICATION_CHANNEL_INBOX,
    }
)
CHANNELS_IN: Mapping[model_pb.NotificationChannel.ValueType, Channel] = MappingProxyType(
    {v: k for k, v in CHANNELS_OUT.items()}
)
CATEGORIES_OUT: Mapping[Category, model_pb.NotificationCategory.ValueType] = MappingProxyType(
    {
        Category.MARKETING: model_pb.NOTIFICATION_CATEGORY_MARKETING,
        Category.SERVICE: model_pb.NOTIFICATION_CATEGORY_SERVICE,
        Category.TRANSACTIONAL: model_pb.NOTIFICATION_CATEGORY_TRANSACTIONAL,
    }
)
CATEGORIES_IN: Mapping[model_pb.NotificationCategory.ValueType, Category] = MappingProxyType(
    {v: k for k, v in CATEGORIES_OUT.items()}
)
PURPOSES_OUT: Mapping[Purpose, model_pb.NotificationPurpose.ValueType] = MappingProxyType(
    {
        Purpose.MARKETING: model_pb.NOTIFICATION_PURPOSE_MARKETING,
        Purpose.SERVICE: model_pb.NOTIFICATION_PURPOSE_SERVICE,
        Purpose.RISK_ALERTS: model_pb.NOTIFICATION_PURPOSE_RISK_ALERTS,
    }
)
PURPOSES_IN: Mapping[model_pb.NotificationPurpose.ValueType, Purpose] = MappingProxyType(
    {v: k for k, v in PURPOSES_OUT.items()}
)
STATUSES_OUT: Mapping[Status, model_pb.NotificationStatus.ValueType] = MappingProxyType(
    {
        Status.QUEUED: model_pb.NOTIFICATION_STATUS_QUEUED,
        Status.DEFERRED: model_pb.NOTIFICATION_STATUS_DEFERRED,
        Status.SENT: model_pb.NOTIFICATION_STATUS_SENT,
        Status.DELIVERED: model_pb.NOTIFICATION_STATUS_DELIVERED,
        Status.FAILED: model_pb.NOTIFICATION_STATUS_FAILED,
        Status.SUPPRESSED: model_pb.NOTIFICATION_STATUS_SUPPRESSED,
        Status.CANCELLED: model_pb.NOTIFICATION_STATUS_CANCELLED,
    }
)
SUPPRESSIONS_OUT: Mapping[SuppressionReason, model_pb.SuppressionReason.ValueType] = (
    MappingProxyType(
        {
            reason: model_pb.SuppressionReason.Value(f"SUPPRESSION_REASON_{reason.name}")
            for reason in SuppressionReason
        }
    )
)
MAX_VALUES = 32
MAX_VALUE_LENGTH = 512


def stamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def failure_of(n: Notification) -> str:
    """FAILED's code: "undelivered: …", "permanent_error: …" or "retries_exhausted: …"."""
    if n.undelivered is not None:
        return f"undelivered: {n.undelivered.error or 'no reason given'}"
    if n.gave_up is not None:
        return f"{n.gave_up.reason.value}: {n.gave_up.error}"
    return ""


def suppression_message(suppression: Suppression) -> model_pb.Suppression:
    return model_pb.Suppression(
        reason=SUPPRESSIONS_OUT[suppression.reason],
        detail=suppression.detail,
    )


def notification_message(n: Notification) -> model_pb.Notification:
    message = model_pb.Notification(
        notification_id=n.notification_id,
        party_id=n.party_id,
        channel=CHANNELS_OUT[n.channel],
        category=CATEGORIES_OUT[n.category],
        template_id=n.template_id,
        status=STATUSES_OUT[n.status],
        create_time=stamp(n.created_at),
        decision_id=n.decision_id,
        offer_id=n.offer_id,
        cancelled_by_decision_id=n.cancelled_by,
        attempts=n.attempts,
        provider=n.accepted.provider if n.accepted else "",
        send_time=stamp(n.sent_at),
        deliver_time=stamp(n.delivered_at),
        failure=failure_of(n) if n.status is Status.FAILED else "",
        version=n.version,
    )
    if n.status is Status.DEFERRED and n.deferred_until is not None:
        message.deferred_until.FromDatetime(n.deferred_until)
    if n.status is Status.SUPPRESSED and n.suppression is not None:
        message.suppression.CopyFrom(suppression_message(n.suppression))
    return message


def inbox_message(entry: InboxEntry) -> model_pb.InboxMessage:
    return model_pb.InboxMessage(
        notification_id=entry.notification_id,
        template_id=entry.template_id,
        language=entry.language,
        subject=entry.subject,
        body=entry.body,
        create_time=stamp(entry.created_at),
        read_time=stamp(entry.read_at),
    )


def send_request(request: pb.SendNotificationRequest) -> SendRequest:
    v = Violations()
    channel = None
    if request.channel in CHANNELS_IN:
        channel = CHANNELS_IN[request.channel]
    elif request.channel != model_pb.NOTIFICATION_CHANNEL_UNSPECIFIED:
        v.add("channel", f"is not a known value ({request.channel})")
    category = None
    if request.category in CATEGORIES_IN:
        category = CATEGORIES_IN[request.category]
    elif request.category != model_pb.NOTIFICATION_CATEGORY_UNSPECIFIED:
        v.add("category", f"is not a known value ({request.category})")
    purpose = None
    if request.purpose in PURPOSES_IN:
        purpose = PURPOSES_IN[request.purpose]
    elif request.purpose != model_pb.NOTIFICATION_PURPOSE_UNSPECIFIED:
        v.add("purpose", f"is not a known value ({request.purpose})")
    if len(request.values) > MAX_VALUES:
        v.add("values", f"at most {MAX_VALUES} entries")
    values: dict[str, str] = {}
    for name, value in request.values.items():
        # The field's name only in a violation: its value may be personal data. A value is text
        # a customer reads: no control or invisible characters (a NUL, a right-to-left override
        # that reorders a passcode, a terminal escape), and not empty.
        values[name] = v.text(
            f"values.{name[:40]}", value, required=True, max_length=MAX_VALUE_LENGTH
        )
    v.raise_if_any()
    return SendRequest(
        party_id=request.party_id,
        channel=channel,
        template_id=request.template_id,
        idempotency_key=request.idempotency_key,
        category=category,
        purpose=purpose,
        values=values,
    )
