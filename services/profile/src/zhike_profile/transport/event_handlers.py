"""Identity events → profile use cases, applied inside the consumer's inbox transaction."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from zhike.identity.v1 import events_pb2 as identity_events
from zhike.identity.v1 import party_pb2 as identity_party
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


def _key(message: identity_party.SourceRecordKey) -> tuple[str, str]:
    if not message.source_system or not message.source_record_id:
        raise PermanentEventError("event has an incomplete source record key")
    return (message.source_system, message.source_record_id)


async def on_parties_merged(
    session: AsyncSession, event: identity_events.PartiesMerged, _context: EventContext
) -> None:
    _require_party(event.surviving_party_id)
    if not event.retired_party_ids or event.surviving_party_id in event.retired_party_ids:
        raise PermanentEventError("a merge needs retired parties other than the survivor")
    await service.apply_parties_merged(
        SqlProfileRepository(session),
        event.surviving_party_id,
        list(event.retired_party_ids),
        event.merge_time.ToDatetime(tzinfo=dt.UTC),
    )


async def on_party_split(
    session: AsyncSession, event: identity_events.PartySplit, _context: EventContext
) -> None:
    _require_party(event.party_id)
    _require_party(event.new_party_id)
    await service.apply_party_split(
        SqlProfileRepository(session),
        event.party_id,
        event.new_party_id,
        [_key(k) for k in event.source_records],
        event.split_time.ToDatetime(tzinfo=dt.UTC),
    )


async def on_source_record_moved(
    session: AsyncSession, event: identity_events.SourceRecordMoved, _context: EventContext
) -> None:
    _require_party(event.to_party_id)
    await service.apply_source_record_moved(
        SqlProfileRepository(session),
        _key(event.source_record),
        event.to_party_id,
        event.move_time.ToDatetime(tzinfo=dt.UTC),
    )


async def on_golden_record_changed(
    session: AsyncSession, event: identity_events.GoldenRecordChanged, _context: EventContext
) -> None:
    _require_party(event.party_id)
    await service.apply_golden_name(
        SqlProfileRepository(session),
        event.party_id,
        event.golden_record.full_name.value,
        event.change_time.ToDatetime(tzinfo=dt.UTC),
    )


def identity_consumer() -> ConsumerSpec:
    return ConsumerSpec(
        durable="profile-identity",
        stream="ZHIKE_IDENTITY",
        filter_subjects=("zhike.identity.v1.>",),
        handlers=(
            EventHandler(identity_events.PartyCreated, on_party_created),
            EventHandler(identity_events.SourceRecordLinked, on_source_record_linked),
            EventHandler(identity_events.SourceRecordMoved, on_source_record_moved),
            EventHandler(identity_events.PartiesMerged, on_parties_merged),
            EventHandler(identity_events.PartySplit, on_party_split),
            EventHandler(identity_events.GoldenRecordChanged, on_golden_record_changed),
        ),
    )
