"""Identity events → profile use cases, applied inside the consumer's inbox transaction."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from zhike.identity.v1 import events_pb2 as identity_events
from zhike_profile.domain import service
from zhike_profile.domain.model import LinkedSourceRecord
from zhike_profile.storage.repository import SqlProfileRepository
from zhike_runtime.events.consumer import (
    ConsumerSpec,
    EventContext,
    EventHandler,
    PermanentEventError,
)


def _require_party(party_id: str) -> None:
    if not party_id:
        raise PermanentEventError("event has no party_id")


async def on_party_created(
    session: AsyncSession, event: identity_events.PartyCreated, _context: EventContext
) -> None:
    _require_party(event.party_id)
    await service.apply_party_created(
        SqlProfileRepository(session), event.party_id, event.create_time.ToDatetime(tzinfo=dt.UTC)
    )


async def on_source_record_linked(
    session: AsyncSession, event: identity_events.SourceRecordLinked, _context: EventContext
) -> None:
    _require_party(event.party_id)
    key = event.source_record
    if not key.source_system or not key.source_record_id:
        raise PermanentEventError("event has no source record key")
    await service.apply_source_record_linked(
        SqlProfileRepository(session),
        event.party_id,
        LinkedSourceRecord(
            key.source_system, key.source_record_id, event.link_time.ToDatetime(tzinfo=dt.UTC)
        ),
    )


def identity_consumer() -> ConsumerSpec:
    return ConsumerSpec(
        durable="profile-identity",
        stream="ZHIKE_IDENTITY",
        filter_subjects=("zhike.identity.v1.>",),
        handlers=(
            EventHandler(identity_events.PartyCreated, on_party_created),
            EventHandler(identity_events.SourceRecordLinked, on_source_record_linked),
        ),
    )
