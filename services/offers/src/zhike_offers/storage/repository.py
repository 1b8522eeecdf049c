"""The offers' stores over SQLAlchemy Core, and its unit of work.

Every write of a projected fact is conditional on the profile version it carries (`… WHERE
party_fact.profile_version < excluded.profile_version`), and reports the keys it took, so the
use cases know what actually changed. Repositories never commit; the unit of work does. Times
are stored in UTC (SQLite keeps no zone: they come back naive and are read as UTC).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_offers.domain.contact_policy import ContactEvent, ContactKind
from zhike_offers.domain.decision import Decision
from zhike_offers.domain.facts import FactKind
from zhike_offers.domain.model import (
    Arbitration,
    ContactPreferences,
    DecisionTrigger,
    OutboundDecision,
    OutboundEvent,
    WithdrawnDecision,
)
from zhike_offers.domain.ports import DecisionInputs, NewContact, StoredDocument, StoredParty
from zhike_offers.domain.projection import FactEntry, ProfileChange, kind_of, segment_key
from zhike_offers.domain.propensity import Counts
from zhike_offers.domain.sweep import SweepState
from zhike_offers.storage import records
from zhike_offers.storage.schema import (
    contact_event,
    decision_log,
    offer,
    offer_version,
    outbound_decision,
    outbound_sweep,
    party,
    party_fact,
    propensity,
)
from zhike_runtime.db import Database, as_utc, delete_chunk, insert_for, optional_to_utc, to_utc
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.unit_of_work import UnitOfWork


class _Store:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect


# --- parties and their facts ------------------------------------------------------------------


def _party(row: Any, facts: dict[str, Any]) -> StoredParty:
    return StoredParty(
        party_id=row.party_id,
        profile_version=int(row.profile_version),
        merged_into=row.merged_into or "",
        forwarding_ended=bool(row.forwarding_ended),
        facts=facts,
        preferences=ContactPreferences(
            row.party_id,
            bool(row.do_not_contact),
            bool(row.personalised_offers),
            int(row.preferences_version),
            optional_to_utc(row.preferences_updated_at),
            records.channel_set(row.opted_out_channels),
        ),
    )


# The hot path's statements are built once: building one costs 0.1-0.2 ms of Python, as much
# as running it.
_PARTY_WITH_FACTS = sa.select(party, party_fact.c.fact_key, party_fact.c.value).select_from(
    party.outerjoin(party_fact, party_fact.c.party_id == party.c.party_id)
)
_PARTY = _PARTY_WITH_FACTS.where(party.c.party_id == sa.bindparam("party_id"))
_PARTIES = _PARTY_WITH_FACTS.where(
    party.c.party_id.in_(sa.bindparam("party_ids", expanding=True))
).order_by(party.c.party_id)


@functools.cache
def _raise_party_version(dialect: str) -> sa.Executable:
    statement = insert_for(dialect, party)
    return statement.on_conflict_do_update(
        index_elements=["party_id"],
        set_={
            "profile_version": statement.excluded.profile_version,
            "updated_at": statement.excluded.updated_at,
        },
        where=party.c.profile_version < statement.excluded.profile_version,
    )


@functools.cache
def _take_fact(dialect: str) -> sa.Executable:
    statement = insert_for(dialect, party_fact)
    return statement.on_conflict_do_update(
        index_elements=["party_id", "fact_key"],
        set_={
            "value": statement.excluded.value,
            "profile_version": statement.excluded.profile_version,
        },
        # The order-safety: only a later profile version replaces a fact.
        where=party_fact.c.profile_version < statement.excluded.profile_version,
    ).returning(party_fact.c.party_id, party_fact.c.fact_key)


class SqlPartyStore(_Store):
    async def get(self, party_id: str) -> StoredParty | None:
        # One statement: the party row with each of its fact rows (a decision's one read).
        rows = (await self._session.execute(_PARTY, {"party_id": party_id})).all()
        if not rows:
            return None
        facts = {row.fact_key: row.value for row in rows if row.fact_key is not None}
        return _party(rows[0], facts)

    async def get_many(self, party_ids: Sequence[str]) -> list[StoredParty]:
        if not party_ids:
            return []
        rows = (await self._session.execute(_PARTIES, {"party_ids": list(party_ids)})).all()
        grouped: dict[str, tuple[Any, dict[str, Any]]] = {}
        for row in rows:
            _, facts = grouped.setdefault(row.party_id, (row, {}))
            if row.fact_key is not None:
                facts[row.fact_key] = row.value
        return [_party(row, facts) for row, facts in grouped.values()]

    async def apply(
        self, changes: Sequence[tuple[ProfileChange, Sequence[FactEntry]]]
    ) -> dict[str, set[FactKind]]:
        # What the changes leave, as one by one would: per party its highest version, per key
        # the first telling of its highest version. One row each: a statement may not touch a
        # row twice, and the conditional upsert makes the rest no-ops anyway.
        parties: dict[str, dict[str, Any]] = {}
        facts: dict[tuple[str, str], dict[str, Any]] = {}
        for change, fact_entries in changes:
            known = parties.get(change.party_id)
            if known is None or change.profile_version > known["profile_version"]:
                parties[change.party_id] = {
                    "party_id": change.party_id,
                    "profile_version": change.profile_version,
                    "updated_at": to_utc(change.at),
                }
            for entry in fact_entries:
                held = facts.get((change.party_id, entry.key))
                if held is None or change.profile_version > held["profile_version"]:
                    facts[(change.party_id, entry.key)] = {
                        "party_id": change.party_id,
                        "fact_key": entry.key,
                        "value": entry.value,
                        "profile_version": change.profile_version,
                    }
        if not parties:
            return {}
        # Many parameter sets of one prepared statement: SQLAlchemy sends them as multi-row
        # INSERTs (its "insertmanyvalues"), compiled once whatever the count; in key order.
        await self._session.execute(
            _raise_party_version(self._dialect), [parties[key] for key in sorted(parties)]
        )
        taken: dict[str, set[FactKind]] = {}
        if facts:
            rows = await self._session.execute(
                _take_fact(self._dialect), [facts[key] for key in sorted(facts)]
            )
            for party_id, fact_key in rows:
                taken.setdefault(party_id, set()).add(kind_of(fact_key))
        return taken

    async def merge(
        self, party_id: str, into: str, at: dt.datetime, profile_version: int, ended: bool
    ) -> bool:
        result = await self._session.execute(
            sa.update(party)
            .where(
                party.c.party_id == party_id,
                # The change applied (apply raised the version to it) and none later has.
                party.c.profile_version == profile_version,
                sa.or_(
                    party.c.merged_into.is_(None),
                    party.c.merged_into != into,
                    party.c.forwarding_ended != ended,
                ),
            )
            .values(merged_into=into, forwarding_ended=ended, updated_at=to_utc(at))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def forwarding_into(self, party_ids: Sequence[str]) -> list[str]:
        if not party_ids:
            return []
        found = await self._session.scalars(
            sa.select(party.c.party_id).where(party.c.merged_into.in_(list(party_ids)))
        )
        return sorted(found)

    async def set_preferences(
        self,
        party_id: str,
        do_not_contact: bool,
        personalised_offers: bool,
        opted_out_channels: frozenset[str],
        at: dt.datetime,
    ) -> ContactPreferences:
        at = to_utc(at)
        statement = insert_for(self._dialect, party).values(
            party_id=party_id,
            do_not_contact=do_not_contact,
            personalised_offers=personalised_offers,
            opted_out_channels=records.channel_text(opted_out_channels),
            preferences_version=1,
            preferences_updated_at=at,
            updated_at=at,
        )
        version = await self._session.scalar(
            statement.on_conflict_do_update(
                index_elements=["party_id"],
                set_={
                    "do_not_contact": statement.excluded.do_not_contact,
                    "personalised_offers": statement.excluded.personalised_offers,
                    "opted_out_channels": statement.excluded.opted_out_channels,
                    "preferences_version": party.c.preferences_version + 1,
                    "preferences_updated_at": statement.excluded.preferences_updated_at,
                },
            ).returning(party.c.preferences_version)
        )
        return ContactPreferences(
            party_id, do_not_contact, personalised_offers, int(version), at, opted_out_channels
        )

    async def ids_after(self, party_id: str, limit: int) -> list[str]:
        ids = await self._session.scalars(
            sa.select(party.c.party_id)
            .where(party.c.party_id > party_id, party.c.merged_into.is_(None))
            .order_by(party.c.party_id)
            .limit(limit)
        )
        return list(ids)

    async def population(self, segment: str) -> list[str]:
        if not segment:
            ids = await self._session.scalars(
                sa.select(party.c.party_id)
                .where(party.c.merged_into.is_(None))
                .order_by(party.c.party_id)
            )
            return list(ids)
        rows = await self._session.execute(
            sa.select(party_fact.c.party_id, party_fact.c.value)
            .join(party, party.c.party_id == party_fact.c.party_id)
            .where(
                party_fact.c.fact_key == segment_key(segment),
                party.c.merged_into.is_(None),
            )
            .order_by(party_fact.c.party_id)
        )
        # A segment left is kept as false (its version still guards it).
        return [row.party_id for row in rows if row.value is True]


# --- contacts ---------------------------------------------------------------------------------

_CONTACT_COLUMNS = (
    contact_event.c.party_id,
    contact_event.c.at,
    contact_event.c.offer_id,
    contact_event.c.channel,
    contact_event.c.kind,
    contact_event.c.marketing,
)


_HISTORIES = sa.select(*_CONTACT_COLUMNS).where(
    contact_event.c.party_id.in_(sa.bindparam("party_ids", expanding=True)),
    contact_event.c.at > sa.bindparam("since"),
)


def _contact(row: Any) -> ContactEvent:
    return ContactEvent(
        as_utc(row.at), row.offer_id, row.channel, ContactKind(row.kind), bool(row.marketing)
    )


@functools.cache
def _add_contact(dialect: str) -> sa.Executable:
    return insert_for(dialect, contact_event).on_conflict_do_nothing()


def _contact_row(contact: NewContact) -> dict[str, Any]:
    event = contact.event
    return {
        "contact_id": contact.contact_id,
        "party_id": contact.party_id,
        "recorded_party_id": contact.recorded_for or contact.party_id,
        "at": to_utc(event.at),
        "offer_id": event.offer_id,
        "channel": event.channel,
        "kind": event.kind.value,
        "marketing": event.marketing,
        "decision_id": contact.decision_id,
    }


class SqlContactStore(_Store):
    async def histories(
        self, party_ids: Sequence[str], since: dt.datetime
    ) -> dict[str, list[ContactEvent]]:
        found: defaultdict[str, list[ContactEvent]] = defaultdict(list)
        if not party_ids:
            return {}
        rows = await self._session.execute(
            _HISTORIES, {"party_ids": list(party_ids), "since": to_utc(since)}
        )
        for row in rows:
            found[row.party_id].append(_contact(row))
        return dict(found)

    async def add(
        self,
        contact_id: str,
        party_id: str,
        event: ContactEvent,
        decision_id: str,
        recorded_for: str = "",
    ) -> bool:
        result = await self._session.execute(
            _add_contact(self._dialect),
            _contact_row(NewContact(contact_id, party_id, event, decision_id, recorded_for)),
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def get(self, contact_id: str) -> NewContact | None:
        row = (
            await self._session.execute(
                sa.select(contact_event).where(contact_event.c.contact_id == contact_id)
            )
        ).first()
        if row is None:
            return None
        return NewContact(row.contact_id, row.party_id, _contact(row), row.decision_id)

    async def add_many(self, contacts: Sequence[NewContact]) -> None:
        if not contacts:
            return
        await self._session.execute(
            _add_contact(self._dialect), [_contact_row(contact) for contact in contacts]
        )

    async def count_answering(self, decision_id: str, kind: ContactKind) -> int:
        found = await self._session.scalar(
            sa.select(sa.func.count())
            .select_from(contact_event)
            .where(contact_event.c.decision_id == decision_id, contact_event.c.kind == kind.value)
        )
        return int(found or 0)

    async def move(self, recorded_for: Sequence[str], from_party: str, to_party: str) -> None:
        recorded = sa.func.coalesce(contact_event.c.recorded_party_id, contact_event.c.party_id)
        await self._session.execute(
            sa.update(contact_event)
            .where(contact_event.c.party_id == from_party, recorded.in_(list(recorded_for)))
            # A contact from before offers_0006 was recorded for the party it is moved from.
            .values(party_id=to_party, recorded_party_id=recorded)
        )

    async def prune(self, before: dt.datetime, limit: int) -> int:
        return await delete_chunk(
            self._session,
            contact_event,
            contact_event.c.contact_id,
            contact_event.c.at < to_utc(before),
            limit,
        )


# --- a decision's inputs ---------------------------------------------------------------------


def _null(column: sa.Column[Any]) -> sa.Label[Any]:
    return sa.cast(sa.null(), column.type).label(column.name)


_CONTACT_ONLY = (
    contact_event.c.at,
    contact_event.c.offer_id,
    contact_event.c.channel,
    contact_event.c.kind,
    contact_event.c.marketing,
)
# A decision's two reads in one statement (one round trip fewer): the party's row with each of
# its facts, then its contacts since a time; each part's rows leave the other's columns NULL.
_DECISION_INPUTS = sa.union_all(
    sa.select(*party.c, party_fact.c.fact_key, party_fact.c.value, *map(_null, _CONTACT_ONLY))
    .select_from(party.outerjoin(party_fact, party_fact.c.party_id == party.c.party_id))
    .where(party.c.party_id == sa.bindparam("party_id")),
    sa.select(
        *map(_null, party.c),
        _null(party_fact.c.fact_key),
        _null(party_fact.c.value),
        *_CONTACT_ONLY,
    ).where(
        contact_event.c.party_id == sa.bindparam("party_id"),
        contact_event.c.at > sa.bindparam("since"),
    ),
)


class SqlDecisionInputs(_Store):
    async def read(self, party_id: str, since: dt.datetime) -> DecisionInputs:
        rows = (
            await self._session.execute(
                _DECISION_INPUTS, {"party_id": party_id, "since": to_utc(since)}
            )
        ).all()
        parties = [row for row in rows if row.party_id is not None]
        facts = {row.fact_key: row.value for row in parties if row.fact_key is not None}
        found = _party(parties[0], facts) if parties else None
        contacts = [_contact(row) for row in rows if row.at is not None]
        revision = await self._session.scalar(CATALOGUE_REVISION)  # in the same transaction
        return DecisionInputs(found, contacts, int(revision or 0))


# --- outbound decisions -----------------------------------------------------------------------


_ACTIVE = (
    sa.select(outbound_decision)
    .where(
        outbound_decision.c.party_id.in_(sa.bindparam("party_ids", expanding=True)),
        outbound_decision.c.active,
    )
    .order_by(
        outbound_decision.c.party_id,
        outbound_decision.c.decided_at,
        outbound_decision.c.decision_id,
    )
)
_ADD_OUTBOUND = outbound_decision.insert()
_WITHDRAW = (
    sa.update(outbound_decision)
    .where(outbound_decision.c.decision_id == sa.bindparam("decision"), outbound_decision.c.active)
    .values(
        active=False,
        withdrawn_at=sa.bindparam("at"),
        withdraw_reason=sa.bindparam("reason"),
        withdraw_detail=sa.bindparam("detail"),
    )
)


def _outbound_decision(row: Any) -> OutboundDecision:
    return OutboundDecision(
        row.decision_id,
        row.party_id,
        row.offer_id,
        int(row.offer_version),
        row.channel,
        row.template_id,
        as_utc(row.decided_at),
    )


class SqlOutboundStore(_Store):
    async def active(self, party_ids: Sequence[str]) -> dict[str, list[OutboundDecision]]:
        found: dict[str, list[OutboundDecision]] = {}
        if not party_ids:
            return found
        rows = await self._session.execute(_ACTIVE, {"party_ids": list(party_ids)})
        for row in rows:
            found.setdefault(row.party_id, []).append(_outbound_decision(row))
        return found

    async def get(self, decision_id: str) -> OutboundDecision | None:
        row = (
            await self._session.execute(
                sa.select(outbound_decision).where(outbound_decision.c.decision_id == decision_id)
            )
        ).first()
        return None if row is None else _outbound_decision(row)

    async def active_parties(self, offer_id: str) -> list[str]:
        ids = await self._session.scalars(
            sa.select(outbound_decision.c.party_id)
            .where(outbound_decision.c.offer_id == offer_id, outbound_decision.c.active)
            .distinct()
            .order_by(outbound_decision.c.party_id)
        )
        return list(ids)

    async def add_many(self, decisions: Sequence[tuple[OutboundDecision, int]]) -> None:
        if not decisions:
            return
        await self._session.execute(
            _ADD_OUTBOUND,
            [
                {
                    "decision_id": decision.decision_id,
                    "party_id": decision.party_id,
                    "offer_id": decision.offer_id,
                    "offer_version": decision.offer_version,
                    "channel": decision.channel,
                    "template_id": decision.template_id,
                    "decided_at": to_utc(decision.decided_at),
                    "profile_version": profile_version,
                    "active": True,
                }
                for decision, profile_version in decisions
            ],
        )

    async def withdraw(self, withdrawn: WithdrawnDecision) -> bool:
        why = withdrawn.why
        reason = why.reason.value if why.suppression is None else why.suppression.value
        result = await self._session.execute(
            _WITHDRAW,
            {
                "decision": withdrawn.decision_id,
                "at": to_utc(withdrawn.at),
                "reason": reason,
                "detail": why.explanation[:1000],
            },
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def prune(self, before: dt.datetime, limit: int) -> int:
        return await delete_chunk(
            self._session,
            outbound_decision,
            outbound_decision.c.decision_id,
            sa.and_(
                sa.not_(outbound_decision.c.active),
                outbound_decision.c.withdrawn_at < to_utc(before),
            ),
            limit,
        )


# --- the decision log -------------------------------------------------------------------------


_LOG_INSERT = decision_log.insert()


def log_row(arbitration: Arbitration) -> dict[str, Any]:
    """An arbitration as its decision_log row (`entry` as plain values, storage/records.py)."""
    decision = arbitration.decision
    return {
        "arbitration_id": arbitration.arbitration_id,
        "party_id": decision.party_id,
        "decided_at": to_utc(decision.decided_at),
        "trigger": arbitration.trigger.value,
        "channel": decision.channel,
        "placement": decision.placement,
        "profile_version": decision.profile_version,
        "inputs_digest": arbitration.inputs_digest,
        "catalogue_version": decision.catalogue_version,
        "model_version": decision.model_version,
        "personalised": decision.personalised,
        "segment": arbitration.segment,
        "requested_by": arbitration.requested_by,
        "entry": {
            "seed": None if decision.seed is None else str(decision.seed),
            "chosen": [records.chosen_json(c) for c in decision.chosen],
            "not_chosen": [records.not_chosen_json(n) for n in decision.not_chosen],
            "withdrawn": [records.withdrawn_json(w) for w in arbitration.withdrawn],
        },
    }


class SqlDecisionLog(_Store):
    async def add_many(self, arbitrations: Sequence[Arbitration]) -> None:
        if arbitrations:
            await self._session.execute(_LOG_INSERT, [log_row(a) for a in arbitrations])

    async def get(self, arbitration_id: str) -> Arbitration | None:
        row = (
            await self._session.execute(
                sa.select(decision_log).where(decision_log.c.arbitration_id == arbitration_id)
            )
        ).first()
        return None if row is None else _arbitration(row)

    async def of_party(
        self, party_id: str, before: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Arbitration]:
        order = (decision_log.c.decided_at, decision_log.c.arbitration_id)
        query = sa.select(decision_log).where(decision_log.c.party_id == party_id)
        if before is not None:
            query = query.where(sa.tuple_(*order) < sa.tuple_(to_utc(before[0]), before[1]))
        rows = await self._session.execute(
            query.order_by(*(column.desc() for column in order)).limit(limit)
        )
        return [_arbitration(row) for row in rows]

    async def prune(self, before: dt.datetime, limit: int) -> int:
        return await delete_chunk(
            self._session,
            decision_log,
            decision_log.c.arbitration_id,
            decision_log.c.decided_at < to_utc(before),
            limit,
        )


def _arbitration(row: Any) -> Arbitration:
    entry = row.entry
    seed = entry.get("seed")
    return Arbitration(
        arbitration_id=row.arbitration_id,
        trigger=DecisionTrigger(row.trigger),
        decision=Decision(
            party_id=row.party_id,
            profile_version=int(row.profile_version),
            channel=row.channel,
            placement=row.placement,
            decided_at=as_utc(row.decided_at),
            catalogue_version=row.catalogue_version,
            model_version=row.model_version,
            seed=None if seed is None else int(seed),
            personalised=bool(row.personalised),
            chosen=tuple(records.read_chosen(c) for c in entry["chosen"]),
            not_chosen=tuple(records.read_not_chosen(n) for n in entry["not_chosen"]),
        ),
        inputs_digest=row.inputs_digest,
        segment=row.segment,
        withdrawn=tuple(records.read_withdrawn(w) for w in entry["withdrawn"]),
        requested_by=row.requested_by,
    )


# --- the catalogue ----------------------------------------------------------------------------


def _document(row: Any) -> StoredDocument:
    return StoredDocument(
        row.offer_id, int(row.version), row.document, bool(row.retired), as_utc(row.saved_at)
    )


# The catalogue's revision: it grows with every save (a new version, a retirement).
CATALOGUE_REVISION = sa.select(sa.func.coalesce(sa.func.sum(offer.c.version), 0))


class SqlCatalogueStore(_Store):
    async def revision(self) -> int:
        total = await self._session.scalar(CATALOGUE_REVISION)
        return int(total or 0)

    async def latest(self) -> list[StoredDocument]:
        rows = await self._session.execute(sa.select(offer).order_by(offer.c.offer_id))
        return [_document(row) for row in rows]

    async def get(self, offer_id: str, version: int = 0) -> StoredDocument | None:
        if version:
            query = sa.select(offer_version).where(
                offer_version.c.offer_id == offer_id, offer_version.c.version == version
            )
        else:
            query = sa.select(offer).where(offer.c.offer_id == offer_id)
        row = (await self._session.execute(query)).first()
        return None if row is None else _document(row)

    async def page(
        self, after: str | None, limit: int, include_retired: bool
    ) -> list[StoredDocument]:
        query = sa.select(offer)
        if after is not None:
            query = query.where(offer.c.offer_id > after)
        if not include_retired:
            query = query.where(sa.not_(offer.c.retired))
        rows = await self._session.execute(query.order_by(offer.c.offer_id).limit(limit))
        return [_document(row) for row in rows]

    async def add(self, saved: StoredDocument, reason: str) -> None:
        values = {
            "offer_id": saved.offer_id,
            "version": saved.version,
            "document": dict(saved.document),
            "retired": saved.retired,
            "saved_at": to_utc(saved.saved_at),
        }
        # A version saved twice (two admins at once) fails here: ConcurrentUpdate.
        await self._session.execute(offer_version.insert().values(**values, reason=reason))
        statement = insert_for(self._dialect, offer).values(**values)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["offer_id"],
                set_={
                    "version": statement.excluded.version,
                    "document": statement.excluded.document,
                    "retired": statement.excluded.retired,
                    "saved_at": statement.excluded.saved_at,
                },
                where=offer.c.version < statement.excluded.version,
            )
        )

    async def add_missing(self, documents: Iterable[StoredDocument]) -> int:
        wanted = {document.offer_id: document for document in documents}
        if not wanted:
            return 0
        known = set(
            await self._session.scalars(
                sa.select(offer.c.offer_id).where(offer.c.offer_id.in_(list(wanted)))
            )
        )
        added = 0
        for offer_id, document in sorted(wanted.items()):
            if offer_id in known:
                continue
            values = {
                "offer_id": offer_id,
                "version": document.version,
                "document": dict(document.document),
                "retired": document.retired,
                "saved_at": to_utc(document.saved_at),
            }
            # Another replica storing the same defaults at the same moment: one of them wins.
            result = await self._session.execute(
                insert_for(self._dialect, offer).values(**values).on_conflict_do_nothing()
            )
            if result.rowcount:  # type: ignore[attr-defined]
                await self._session.execute(
                    insert_for(self._dialect, offer_version)
                    .values(**values, reason="default")
                    .on_conflict_do_nothing()
                )
                added += 1
        return added


# --- propensity -------------------------------------------------------------------------------


class SqlPropensityStore(_Store):
    async def add(
        self, offer_id: str, segment: str, successes: float, failures: float, at: dt.datetime
    ) -> None:
        statement = insert_for(self._dialect, propensity).values(
            offer_id=offer_id,
            segment=segment,
            successes=successes,
            failures=failures,
            updated_at=to_utc(at),
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["offer_id", "segment"],
                set_={
                    "successes": propensity.c.successes + statement.excluded.successes,
                    "failures": propensity.c.failures + statement.excluded.failures,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )

    async def counts(self) -> dict[tuple[str, str], Counts]:
        rows = await self._session.execute(sa.select(propensity))
        return {
            (row.offer_id, row.segment): Counts(float(row.successes), float(row.failures))
            for row in rows
        }


_SWEEP = "outbound"  # the one sweep there is: the row's key


class SqlSweepStore(_Store):
    async def get(self) -> SweepState | None:
        row = (
            await self._session.execute(
                sa.select(outbound_sweep).where(outbound_sweep.c.sweep == _SWEEP)
            )
        ).first()
        if row is None:
            return None
        return SweepState(frozenset(row.offers), frozenset(row.fresh), row.cursor, row.finished)

    async def put(self, state: SweepState, at: dt.datetime) -> None:
        values = {
            "offers": sorted(state.offers),
            "fresh": sorted(state.fresh),
            "cursor": state.cursor,
            "finished": state.finished,
            "updated_at": to_utc(at),
        }
        statement = insert_for(self._dialect, outbound_sweep).values(sweep=_SWEEP, **values)
        await self._session.execute(
            statement.on_conflict_do_update(index_elements=["sweep"], set_=values)
        )


class SqlOffersUnitOfWork(UnitOfWork):
    """The runtime's unit of work with the offers' stores; `record` stages an OfferDecided or
    OfferWithdrawn in the outbox of the same transaction."""

    def __init__(
        self,
        database: Database,
        encode: Callable[[OutboundEvent], OutgoingEvent],
        on_commit: Callable[[], None] | None = None,
        *,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(database, on_commit=on_commit)
        self._encode = encode
        # Awaited before the transaction begins: the consumer's units load the catalogue and
        # the model there if they were never loaded (a second transaction inside this one
        # would wait for ever on SQLite's one writer).
        self._before = before

    async def __aenter__(self) -> Self:
        if self._before is not None:
            await self._before()
        await super().__aenter__()
        self.inputs = SqlDecisionInputs(self.session, self.dialect)
        self.parties = SqlPartyStore(self.session, self.dialect)
        self.contacts = SqlContactStore(self.session, self.dialect)
        self.outbound = SqlOutboundStore(self.session, self.dialect)
        self.decisions = SqlDecisionLog(self.session, self.dialect)
        self.catalogue = SqlCatalogueStore(self.session, self.dialect)
        self.propensity = SqlPropensityStore(self.session, self.dialect)
        self.sweeps = SqlSweepStore(self.session, self.dialect)
        return self

    def record(self, event: OutboundEvent) -> None:
        self.stage(self._encode(event))
