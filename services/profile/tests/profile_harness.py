"""The profile's use cases over real storage, driven the way its consumers drive them: each
event in its own transaction with its inbox row, so a redelivered one changes nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from zhike.notifications.v1 import events_pb2 as notifications_pb
from zhike.profile.v1 import events_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.app import DEFINITION
from zhike_profile.config import load_assessment_config
from zhike_profile.domain.facts import SourceKey
from zhike_profile.domain.model import ProfileView
from zhike_profile.domain.ports import ProfileUnitOfWork
from zhike_profile.domain.service import (
    Facts,
    ProfileClock,
    ProfileQueries,
    ProfileUpdates,
    RecordLink,
)
from zhike_profile.storage.repository import SqlProfileUnitOfWork
from zhike_profile.transport import codec, notifications_codec
from zhike_profile.transport.source_codec import decode_source_event
from zhike_runtime.db import Database, insert_for
from zhike_runtime.events.schema import inbox_event, outbox_event
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.validation import Violations

from .source_facts import T0

CONFIG = load_assessment_config()
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Harness:
    def __init__(self, database: Database, now: dt.datetime = T0) -> None:
        self.database = database
        self.now = now
        self.clock = ProfileClock(SHANGHAI, lambda: self.now)
        self.facts = Facts(CONFIG, self.clock)
        self.updates = ProfileUpdates(self.facts)
        self.queries = ProfileQueries(self.unit, self.facts)

    @classmethod
    async def start(cls, database_url: str, now: dt.datetime = T0) -> Harness:
        database = Database(database_url)
        await apply_migrations(database, DEFINITION.migrations)
        return cls(database, now)

    def unit(self) -> SqlProfileUnitOfWork:
        return SqlProfileUnitOfWork(self.database, codec.outgoing_event)

    async def deliver(
        self, event_id: str, apply: Callable[[ProfileUnitOfWork], Awaitable[object]]
    ) -> bool:
        """As the consumer applies an event: the inbox row and the effect in one transaction;
        False (and nothing changed) for an event seen before."""
        async with self.unit() as unit:
            row = {
                "consumer": "harness",
                "event_id": event_id,
                "event_type": "test",
                "processed_at": dt.datetime.now(dt.UTC),
            }
            result = await unit.session.execute(
                insert_for(unit.dialect, inbox_event).values(row).on_conflict_do_nothing()
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return False
            await apply(unit)
            await unit.commit()
        return True

    # --- the events -------------------------------------------------------------------------

    async def source(self, message: source_pb.SourceEvent) -> bool:
        v = Violations()
        event = decode_source_event(v, "", message, self.now, self.clock.zone)
        v.raise_if_any()
        assert event is not None
        key = f"{event.source.source_system}:{event.event_id}"
        return await self.deliver(key, lambda unit: self.updates.apply_source_event(unit, event))

    async def created(self, event_id: str, party_id: str, at: dt.datetime = T0) -> bool:
        return await self.deliver(
            event_id, lambda unit: self.updates.party_created(unit, party_id, at)
        )

    async def linked(
        self,
        event_id: str,
        key: SourceKey,
        party_id: str,
        version: int,
        at: dt.datetime = T0,
    ) -> bool:
        link = RecordLink(key, party_id, version, at)
        return await self.deliver(event_id, lambda unit: self.updates.records_linked(unit, [link]))

    async def split(
        self,
        event_id: str,
        new_party_id: str,
        records: Sequence[tuple[SourceKey, int]],
        at: dt.datetime = T0,
    ) -> bool:
        links = [RecordLink(key, new_party_id, version, at) for key, version in records]
        return await self.deliver(event_id, lambda unit: self.updates.records_linked(unit, links))

    async def merged(
        self,
        event_id: str,
        survivor: str,
        retired: Sequence[str],
        at: dt.datetime = T0,
        versions: Sequence[int] = (),
    ) -> bool:
        """PartiesMerged, with identity's forwarding version of each retired party (none: an
        event from before versions)."""
        forwarding = list(zip(retired, versions or [0] * len(retired), strict=True))
        return await self.deliver(
            event_id, lambda unit: self.updates.parties_merged(unit, survivor, forwarding, at)
        )

    async def forwarding_ended(
        self, event_id: str, party_id: str, kept: str, version: int, at: dt.datetime = T0
    ) -> bool:
        """PartyForwardingEnded: `party_id` names no one person; `kept` is the split party."""
        return await self.deliver(
            event_id,
            lambda unit: self.updates.forwarding_ended(unit, party_id, kept, version, at),
        )

    async def named(
        self,
        event_id: str,
        party_id: str,
        name: str,
        at: dt.datetime = T0,
        birth_date: dt.date | None = None,
    ) -> bool:
        """GoldenRecordChanged: the party's golden name and birth date as of `at`."""
        return await self.deliver(
            event_id,
            lambda unit: self.updates.golden_record(unit, party_id, name, birth_date, at),
        )

    async def consent_withdrawn(
        self, event_id: str, message: notifications_pb.ConsentWithdrawn
    ) -> bool:
        """Notifications' ConsentWithdrawn (a reply "TD", an unsubscribe link), decoded as its
        consumer decodes it."""
        party_id, notification_id, withdrawal = notifications_codec.consent_withdrawal(message)
        return await self.deliver(
            event_id,
            lambda unit: self.updates.consent_withdrawn_by_message(
                unit, party_id, notification_id, withdrawal
            ),
        )

    async def notification_sent(
        self, event_id: str, message: notifications_pb.NotificationSent
    ) -> bool:
        """Notifications' NotificationSent, decoded as its consumer decodes it."""
        party_id, sent, at = notifications_codec.sent_message(message)
        return await self.deliver(
            event_id, lambda unit: self.updates.message_sent(unit, party_id, sent, at)
        )

    # --- reading ----------------------------------------------------------------------------

    async def profile(self, party_id: str) -> ProfileView:
        return await self.queries.get_profile(party_id)

    async def balances(self, party_id: str) -> dict[str, int]:
        """Per currency, the sum of the party's open holdings' balances."""
        view = await self.profile(party_id)
        assert view.facts is not None
        sums: dict[str, int] = {}
        for holding in view.facts.holdings:
            if holding.is_open:
                currency = holding.balance.currency
                sums[currency] = sums.get(currency, 0) + holding.balance.minor_units
        return sums

    async def changes(self) -> list[events_pb2.ProfileChanged]:
        """Every ProfileChanged in the outbox, in commit order."""
        async with self.database.session() as session:
            rows = await session.execute(
                sa.select(outbox_event.c.payload)
                .where(outbox_event.c.subject == codec.PROFILE_CHANGED_SUBJECT)
                .order_by(outbox_event.c.position)
            )
            return [events_pb2.ProfileChanged.FromString(row.payload) for row in rows]

    async def close(self) -> None:
        await self.database.dispose()


def age_facts(
    changes: list[events_pb2.ProfileChanged], party_id: str
) -> list[tuple[int | None, int | None]]:
    """(before, after) years of every age fact told about the party, in order (None: unset)."""
    told = []
    for change in changes:
        if change.party_id != party_id:
            continue
        for fact in change.facts:
            if fact.HasField("age_changed"):
                age = fact.age_changed
                told.append(
                    (
                        age.before_years if age.HasField("before_years") else None,
                        age.after_years if age.HasField("after_years") else None,
                    )
                )
    return told
