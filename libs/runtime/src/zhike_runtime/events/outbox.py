"""Transactional outbox: events are rows written in the same transaction as the state change.

A use case calls `add_to_outbox` on its own session before committing; nothing reaches NATS until
the relay reads the committed row, so a rolled-back transaction can never publish a phantom event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_runtime.events import headers as h
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.ids import new_id
from zhike_runtime.telemetry import inject_context


@dataclass(frozen=True)
class OutgoingEvent:
    """A fact to publish: the subject it goes to and its protobuf payload."""

    subject: str
    message: Message
    event_id: str = field(default_factory=new_id)


async def add_to_outbox(session: AsyncSession, events: Sequence[OutgoingEvent]) -> None:
    """Stages events in the caller's transaction, with the current trace context in the headers."""
    if not events:
        return
    now = dt.datetime.now(dt.UTC)
    rows = []
    for item in events:
        headers: dict[str, str] = {}
        inject_context(headers)
        event_type = item.message.DESCRIPTOR.full_name
        headers |= {
            h.MSG_ID: item.event_id,
            h.EVENT_ID: item.event_id,
            h.EVENT_TYPE: event_type,
            h.CONTENT_TYPE: h.PROTOBUF,
            h.OCCURRED_AT: now.isoformat(),
        }
        rows.append(
            {
                "event_id": item.event_id,
                "subject": item.subject,
                "event_type": event_type,
                "payload": item.message.SerializeToString(),
                "headers": headers,
                "created_at": now,
            }
        )
    await session.execute(outbox_event.insert(), rows)
