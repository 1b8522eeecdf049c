"""The offers' use cases over real storage, wired as app.py wires them, driven the way the
consumer drives them: each ProfileChanged in its own transaction with its inbox row, so a
redelivered one changes nothing. Time is the harness's to move."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from google.protobuf.message import Message

from zhike.offers.v1 import events_pb2 as offers_events
from zhike.profile.v1 import events_pb2 as profile_events
from zhike_offers.app import DEFINITION
from zhike_offers.catalogue import load_catalogue
from zhike_offers.domain.catalogue import Catalogue
from zhike_offers.domain.decision import DecisionConfig, DecisionRequest, decision_request
from zhike_offers.domain.facts import OfferFacts
from zhike_offers.domain.model import Decided
from zhike_offers.domain.projection import assemble
from zhike_offers.domain.service import (
    Arbiter,
    CatalogueAdmin,
    CatalogueCache,
    MessageSent,
    NotificationReactions,
    OfferDecisions,
    OffersClock,
    OutboundDecisions,
    OutboundSweep,
    ProfileReactions,
    PropensityCache,
    Retention,
)
from zhike_offers.storage.decision_store import decision_store
from zhike_offers.storage.repository import SqlOffersUnitOfWork
from zhike_offers.transport import event_codec
from zhike_runtime.db import Database, insert_for
from zhike_runtime.events.schema import inbox_event, outbox_event
from zhike_runtime.migrations import apply_migrations

from .domain.builders import shared_environment
from .profile_events import T0

SHANGHAI = ZoneInfo("Asia/Shanghai")
_EVENT_TYPES: dict[str, type[Message]] = {
    event_codec.OFFER_DECIDED_SUBJECT: offers_events.OfferDecided,
    event_codec.OFFER_WITHDRAWN_SUBJECT: offers_events.OfferWithdrawn,
    event_codec.PREFERENCES_CHANGED_SUBJECT: offers_events.ContactPreferencesChanged,
}


def default_catalogue() -> Catalogue:
    return load_catalogue(shared_environment())


class Harness:
    def __init__(
        self,
        database: Database,
        catalogue: Catalogue,
        now: dt.datetime = T0,
        config: DecisionConfig | None = None,
        *,
        retention_days: int = 180,
        sweep_chunk: int = 50,
    ) -> None:
        self.database = database
        self.now = now
        self.config = config or DecisionConfig()
        self.clock = OffersClock(lambda: self.now, SHANGHAI)
        self.catalogues = CatalogueCache(self.unit, shared_environment(), catalogue, self.clock)
        self.models = PropensityCache(self.unit)
        arbiter = Arbiter(self.config)
        self.outbound = OutboundDecisions(self.catalogues, self.models, arbiter, self.clock)
        self.reactions = ProfileReactions(self.catalogues, self.outbound, self.clock)
        self.notification_reactions = NotificationReactions(self.catalogues)
        self.store = decision_store(database, self.unit, pool_size=10)
        self.decisions = OfferDecisions(
            self.unit,
            self.catalogues,
            self.models,
            arbiter,
            self.outbound,
            self.clock,
            decision_store=self.store,
        )
        self.admin = CatalogueAdmin(
            self.unit, self.catalogues, self.models, self.outbound, self.clock, self.config
        )
        self.retention = Retention(
            self.unit, self.catalogues, self.config, self.clock, decision_log_days=retention_days
        )
        self.sweep = OutboundSweep(self.unit, self.outbound, self.clock, chunk=sweep_chunk)

    @classmethod
    async def start(
        cls,
        database_url: str,
        catalogue: Catalogue | None = None,
        **options: Any,
    ) -> Harness:
        database = Database(database_url)
        await apply_migrations(database, DEFINITION.migrations)
        return cls(database, catalogue or default_catalogue(), **options)

    def unit(self) -> SqlOffersUnitOfWork:
        return SqlOffersUnitOfWork(self.database, event_codec.outgoing_event)

    async def deliver(self, event_id: str, message: profile_events.ProfileChanged) -> bool:
        """As the consumer applies a ProfileChanged: the inbox row and the effect in one
        transaction; False (and nothing changed) for an event id seen before."""
        change = event_codec.profile_change(message)
        unit_of_work = SqlOffersUnitOfWork(
            self.database, event_codec.outgoing_event, before=self.outbound.ready
        )
        async with unit_of_work as unit:
            row = {
                "consumer": "harness",
                "event_id": event_id,
                "event_type": message.DESCRIPTOR.full_name,
                "processed_at": dt.datetime.now(dt.UTC),
            }
            result = await unit.session.execute(
                insert_for(unit.dialect, inbox_event).values(row).on_conflict_do_nothing()
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return False
            await self.reactions.apply(unit, change)
            await unit.commit()
        return True

    async def deliver_batch(
        self, events: list[tuple[str, profile_events.ProfileChanged]]
    ) -> list[bool]:
        """As the consumer applies a fetch as one batch: every inbox row and the new events'
        effect in one transaction; for each event, False when its id was seen before (in an
        earlier delivery or earlier in this batch)."""
        unit_of_work = SqlOffersUnitOfWork(
            self.database, event_codec.outgoing_event, before=self.outbound.ready
        )
        new: list[bool] = []
        async with unit_of_work as unit:
            changes = []
            for event_id, message in events:
                row = {
                    "consumer": "harness",
                    "event_id": event_id,
                    "event_type": message.DESCRIPTOR.full_name,
                    "processed_at": dt.datetime.now(dt.UTC),
                }
                result = await unit.session.execute(
                    insert_for(unit.dialect, inbox_event).values(row).on_conflict_do_nothing()
                )
                new.append(bool(result.rowcount))  # type: ignore[attr-defined]
                if new[-1]:
                    changes.append(event_codec.profile_change(message))
            if changes:
                await self.reactions.apply_batch(unit, changes)
            await unit.commit()
        return new

    async def message_sent(self, message: MessageSent) -> bool:
        """As the consumer applies a NotificationSent or NotificationDelivered (decoded): in
        its own transaction; True when it recorded a contact."""
        unit_of_work = SqlOffersUnitOfWork(
            self.database, event_codec.outgoing_event, before=self.outbound.ready
        )
        async with unit_of_work as unit:
            recorded = await self.notification_reactions.message_sent(unit, message)
            await unit.commit()
        return recorded

    async def decide(self, party_id: str, channel: str, **fields: Any) -> Decided:
        request: DecisionRequest = decision_request(channel=channel, **fields)
        return await self.decisions.decide(party_id, request, requested_by="test-user")

    async def facts(self, party_id: str) -> OfferFacts | None:
        async with self.unit() as unit:
            party = await unit.parties.get(party_id)
        if party is None:
            return None
        return assemble(party.party_id, party.profile_version, party.facts)

    async def published(self) -> list[Message]:
        """Every OfferDecided and OfferWithdrawn in the outbox, in commit order."""
        async with self.database.session() as session:
            rows = await session.execute(
                sa.select(outbox_event.c.subject, outbox_event.c.payload).order_by(
                    outbox_event.c.position
                )
            )
            return [_EVENT_TYPES[row.subject].FromString(row.payload) for row in rows]

    async def decided(self) -> list[offers_events.OfferDecided]:
        return [m for m in await self.published() if isinstance(m, offers_events.OfferDecided)]

    async def withdrawn(self) -> list[offers_events.OfferWithdrawn]:
        return [m for m in await self.published() if isinstance(m, offers_events.OfferWithdrawn)]

    async def preferences_changed(self) -> list[offers_events.ContactPreferencesChanged]:
        return [
            m
            for m in await self.published()
            if isinstance(m, offers_events.ContactPreferencesChanged)
        ]

    async def count(self, table: sa.Table) -> int:
        async with self.database.session() as session:
            return int(await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)

    async def close(self) -> None:
        await self.store.close()
        await self.database.dispose()
