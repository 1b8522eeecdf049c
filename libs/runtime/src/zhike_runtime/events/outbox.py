"""Transactional outbox: events are rows written in the same transaction as the state change.

A use case calls `add_to_outbox` on its own session before committing; nothing reaches NATS until
the relay reads the committed row, so a rolled-back transaction can never publish a phantom event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_runtime.events import headers as h
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.ids import new_id
from zhike_runtime.telemetry import inject_context

# Set by `add_to_outbox` for every event: `OutgoingEvent.headers` may not name them.
_STANDARD = frozenset({h.MSG_ID, h.EVENT_ID, h.EVENT_TYPE, h.CONTENT_TYPE, h.OCCURRED_AT})


@dataclass(frozen=True)
class OutgoingEvent:
    """A fact to publish: the subject it goes to and its protobuf payload. `headers` adds
    headers of its own (values without personal data), such as those of a dead letter a service
    parks itself (`zhike_runtime.events.dead_letters.dead_letter_event`)."""

    subject: str
    message: Message
    event_id: str = field(default_factory=new_id)
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        taken = sorted(_STANDARD.intersection(self.headers))
        if taken:
            raise ValueError(f"headers set by the outbox itself: {', '.join(taken)}")


async def add_to_outbox(session: AsyncSession, events: Sequence[OutgoingEvent]) -> None:
    """Stages events in the caller's transaction, with the current trace context in the headers."""
    if not events:
        return
    now = dt.datetime.now(dt.UTC)
    rows = []
    for item in events:
        headers: dict[str, str] = dict(item.headers)
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
