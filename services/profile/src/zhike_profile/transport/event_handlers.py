"""Events → profile use cases, applied inside the consumer's unit of work (with its inbox row).

Three consumers, one table of handlers each:
- `profile-identity` on ZHIKE_IDENTITY: identity's parties and links;
- `profile-source` on ZHIKE_SOURCE: the source systems' facts, from streaming adapters and from
  IngestSourceEvents alike. A malformed one is dead-lettered with the field named; one for a
  record identity has not linked yet is applied to the record's facts all the same (they count
  for a profile from the moment the link arrives): never dropped or dead-lettered for that;
- `profile-notifications` on ZHIKE_NOTIFICATIONS: consents the customer withdrew by replying to
  a message or unsubscribing, and the messages sent (the contact history). Only those two
  subjects are fetched: delivery receipts, failures and suppressions tell the profile nothing
  it keeps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from zhike.identity.v1 import events_pb2 as identity_events
from zhike.identity.v1 import party_pb2 as identity_party
from zhike.notifications.v1 import events_pb2 as notifications_events
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.domain.facts import SourceKey
from zhike_profile.domain.ports import ProfileUnitOfWork
from zhike_profile.domain.service import ProfileUpdates, RecordLink
from zhike_profile.domain.source_events import SourceEvent
from zhike_profile.storage.repository import SqlProfileUnitOfWork
from zhike_profile.transport import notifications_codec
from zhike_profile.transport.source_codec import (
    SUBJECT_PREFIX,
    decode_source_event,
    message_id,
    subject_for,
)
from zhike_runtime.errors import InvalidArgument
from zhike_runtime.events.consumer import (
    ConsumerSpec,
    EventContext,
    EventHandler,
    PermanentEventError,
    ReceivedEvent,
    unit_of,
)
from zhike_runtime.events.decoding import malformed, platform_id, recent_event_time
from zhike_runtime.unit_of_work import UnitOfWork
from zhike_runtime.validation import Violations

SOURCE_STREAM = "ZHIKE_SOURCE"
SOURCE_DURABLE = "profile-source"
IDENTITY_DURABLE = "profile-identity"
NOTIFICATIONS_STREAM = "ZHIKE_NOTIFICATIONS"
NOTIFICATIONS_DURABLE = "profile-notifications"


def _profile_unit(unit: UnitOfWork) -> ProfileUnitOfWork:
    return unit_of(unit, SqlProfileUnitOfWork)


def _unit(context: EventContext) -> ProfileUnitOfWork:
    return _profile_unit(context.unit)


# Identity's limits on a source record key, and the golden name (the columns they fill).
_KEY_PARTS = (("source_system", 64), ("source_record_id", 128))
_NAME_LENGTH = 200


def _party(event: str, party_id: str, field: str = "party_id") -> str:
    """A party id identity issued (a UUID); anything else is malformed, naming the field."""
    return platform_id(party_id, event, field, "a party id")


def _key(event: str, message: identity_party.SourceRecordKey, field: str) -> SourceKey:
    for part, longest in _KEY_PARTS:
        value: str = getattr(message, part)
        if not value or len(value) > longest or not value.isprintable():
            raise malformed(
                event, f"{field}.{part}", f"is missing, longer than {longest} or unprintable"
            )
    return SourceKey(message.source_system, message.source_record_id)


def _birth_date(golden: identity_party.GoldenRecord) -> dt.date | None:
    """The golden birth date (identity gives it as YYYY-MM-DD), None when identity has none.
    The error names the field only: the value is personal data."""
    if not golden.birth_date.value:
        return None
    try:
        return dt.date.fromisoformat(golden.birth_date.value)
    except ValueError:
        raise PermanentEventError(
            "event has a golden_record.birth_date that is not a date (YYYY-MM-DD)"
        ) from None


def _name(event: str, value: str) -> str:
    if len(value) > _NAME_LENGTH or not value.isprintable():
        # The field only: the value is personal data.
        raise malformed(event, "golden_record.full_name", "is too long or unprintable")
    return value


class IdentityEventHandlers:
    def __init__(self, updates: ProfileUpdates) -> None:
        self._updates = updates

    async def party_created(
        self, _session: AsyncSession, event: identity_events.PartyCreated, context: EventContext
    ) -> None:
        name = "PartyCreated"
        await self._updates.party_created(
            _unit(context),
            _party(name, event.party_id),
            recent_event_time(event.create_time, name, "create_time"),
        )

    async def source_record_linked(
        self,
        _session: AsyncSession,
        event: identity_events.SourceRecordLinked,
        context: EventContext,
    ) -> None:
        name = "SourceRecordLinked"
        link = RecordLink(
            _key(name, event.source_record, "source_record"),
            _party(name, event.party_id),
            event.link_version,
            recent_event_time(event.link_time, name, "link_time"),
        )
        await self._updates.records_linked(_unit(context), [link])

    async def source_record_moved(
        self,
        _session: AsyncSession,
        event: identity_events.SourceRecordMoved,
        context: EventContext,
    ) -> None:
        name = "SourceRecordMoved"
        link = RecordLink(
            _key(name, event.source_record, "source_record"),
            _party(name, event.to_party_id, "to_party_id"),
            event.link_version,
            recent_event_time(event.move_time, name, "move_time"),
        )
        await self._updates.records_linked(_unit(context), [link])

    async def parties_merged(
        self, _session: AsyncSession, event: identity_events.PartiesMerged, context: EventContext
    ) -> None:
        name = "PartiesMerged"
        survivor = _party(name, event.surviving_party_id, "surviving_party_id")
        retired = [
            _party(name, party_id, f"retired_party_ids[{i}]")
            for i, party_id in enumerate(event.retired_party_ids)
        ]
        if not retired or survivor in retired:
            raise PermanentEventError("a merge needs retired parties other than the survivor")
        versions = list(event.forwarding_versions) or [0] * len(retired)
        if len(versions) != len(retired) or min(versions) < 0:
            raise PermanentEventError("a merge needs one forwarding version per retired party")
        await self._updates.parties_merged(
            _unit(context),
            survivor,
            list(zip(retired, versions, strict=True)),
            recent_event_time(event.merge_time, name, "merge_time"),
        )

    async def party_forwarding_ended(
        self,
        _session: AsyncSession,
        event: identity_events.PartyForwardingEnded,
        context: EventContext,
    ) -> None:
        name = "PartyForwardingEnded"
        if event.forwarding_version <= 0:
            raise PermanentEventError("an end of forwarding needs its forwarding version")
        party_id = _party(name, event.party_id)
        kept = _party(name, event.kept_party_id, "kept_party_id")
        if kept == party_id:
            raise PermanentEventError("an end of forwarding needs a kept party other than it")
        await self._updates.forwarding_ended(
            _unit(context),
            party_id,
            kept,
            event.forwarding_version,
            recent_event_time(event.end_time, name, "end_time"),
        )

    async def party_split(
        self, _session: AsyncSession, event: identity_events.PartySplit, context: EventContext
    ) -> None:
        name = "PartySplit"
        _party(name, event.party_id)
        new_party = _party(name, event.new_party_id, "new_party_id")
        versions = list(event.link_versions) or [0] * len(event.source_records)
        if len(versions) != len(event.source_records):
            raise PermanentEventError("a split needs one link version per source record")
        at = recent_event_time(event.split_time, name, "split_time")
        links = [
            RecordLink(_key(name, key, f"source_records[{i}]"), new_party, version, at)
            for i, (key, version) in enumerate(zip(event.source_records, versions, strict=True))
        ]
        await self._updates.records_linked(_unit(context), links)

    async def golden_record_changed(
        self,
        _session: AsyncSession,
        event: identity_events.GoldenRecordChanged,
        context: EventContext,
    ) -> None:
        name = "GoldenRecordChanged"
        await self._updates.golden_record(
            _unit(context),
            _party(name, event.party_id),
            _name(name, event.golden_record.full_name.value),
            _birth_date(event.golden_record),
            recent_event_time(event.change_time, name, "change_time"),
        )


def identity_consumer(
    updates: ProfileUpdates, unit_of_work: Callable[[], SqlProfileUnitOfWork]
) -> ConsumerSpec:
    handlers = IdentityEventHandlers(updates)
    return ConsumerSpec(
        durable=IDENTITY_DURABLE,
        stream="ZHIKE_IDENTITY",
        filter_subjects=("zhike.identity.v1.>",),
        handlers=(
            EventHandler(identity_events.PartyCreated, handlers.party_created),
            EventHandler(identity_events.SourceRecordLinked, handlers.source_record_linked),
            EventHandler(identity_events.SourceRecordMoved, handlers.source_record_moved),
            EventHandler(identity_events.PartiesMerged, handlers.parties_merged),
            EventHandler(identity_events.PartySplit, handlers.party_split),
            EventHandler(identity_events.PartyForwardingEnded, handlers.party_forwarding_ended),
            EventHandler(identity_events.GoldenRecordChanged, handlers.golden_record_changed),
        ),
        unit_of_work=unit_of_work,
    )


class SourceEventHandler:
    def __init__(
        self, updates: ProfileUpdates, now: Callable[[], dt.datetime], zone: ZoneInfo
    ) -> None:
        self._updates = updates
        self._now = now
        self._zone = zone  # the bank's: a source event's dates are measured from its day there

    def decode(self, message: source_pb.SourceEvent, context: EventContext) -> SourceEvent:
        v = Violations()
        event = decode_source_event(v, "", message, self._now(), self._zone)
        try:
            v.raise_if_any()
        except InvalidArgument as error:
            raise PermanentEventError(f"malformed source event: {error}") from None
        assert event is not None  # no violations: decoded
        system = event.source.source_system
        if context.subject != subject_for(system):
            raise PermanentEventError(
                f"published on the subject of another source system (expected "
                f"{SUBJECT_PREFIX}.<source_record.source_system>)"
            )
        if context.event_id != message_id(system, event.event_id):
            # The inbox key must be the event's own, or a duplicate from the other door would
            # be applied twice.
            raise PermanentEventError("Nats-Msg-Id must be <source_system>:<event_id>")
        return event

    async def __call__(
        self, _session: AsyncSession, message: source_pb.SourceEvent, context: EventContext
    ) -> None:
        await self._updates.apply_source_events(_unit(context), [self.decode(message, context)])

    async def batch(
        self, unit: UnitOfWork, received: Sequence[ReceivedEvent]
    ) -> list[ReceivedEvent]:
        """A fetch's new events in one transaction, each party told once. A malformed one
        fails the batch: its events then go one by one, and that one alone is dead-lettered.
        Events whose record or party another replica's batch holds are left for the next
        batch (returned) instead of waited for, as long as the consumer allows."""
        events = [
            self.decode(cast(source_pb.SourceEvent, item.message), item.context)
            for item in received
        ]
        left = await self._updates.apply_source_events(
            _profile_unit(unit), events, [item.may_defer for item in received]
        )
        return [received[i] for i in sorted(left)]


def source_consumer(
    updates: ProfileUpdates,
    unit_of_work: Callable[[], SqlProfileUnitOfWork],
    now: Callable[[], dt.datetime],
    zone: ZoneInfo,
) -> ConsumerSpec:
    handler = SourceEventHandler(updates, now, zone)
    return ConsumerSpec(
        durable=SOURCE_DURABLE,
        stream=SOURCE_STREAM,
        filter_subjects=(f"{SUBJECT_PREFIX}.>",),
        handlers=(EventHandler(source_pb.SourceEvent, handler),),
        unit_of_work=unit_of_work,
        batch_handler=handler.batch,
    )


class NotificationsEventHandlers:
    def __init__(self, updates: ProfileUpdates) -> None:
        self._updates = updates

    async def consent_withdrawn(
        self,
        _session: AsyncSession,
        event: notifications_events.ConsentWithdrawn,
        context: EventContext,
    ) -> None:
        party_id, notification_id, withdrawal = notifications_codec.consent_withdrawal(event)
        await self._updates.consent_withdrawn_by_message(
            _unit(context), party_id, notification_id, withdrawal
        )

    async def notification_sent(
        self,
        _session: AsyncSession,
        event: notifications_events.NotificationSent,
        context: EventContext,
    ) -> None:
        party_id, message, at = notifications_codec.sent_message(event)
        await self._updates.message_sent(_unit(context), party_id, message, at)


def notifications_consumer(
    updates: ProfileUpdates, unit_of_work: Callable[[], SqlProfileUnitOfWork]
) -> ConsumerSpec:
    handlers = NotificationsEventHandlers(updates)
    return ConsumerSpec(
        durable=NOTIFICATIONS_DURABLE,
        stream=NOTIFICATIONS_STREAM,
        filter_subjects=(
            notifications_codec.CONSENT_WITHDRAWN_SUBJECT,
            notifications_codec.NOTIFICATION_SENT_SUBJECT,
        ),
        handlers=(
            EventHandler(notifications_events.ConsentWithdrawn, handlers.consent_withdrawn),
            EventHandler(notifications_events.NotificationSent, handlers.notification_sent),
        ),
        unit_of_work=unit_of_work,
    )
