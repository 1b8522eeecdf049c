"""Repositories and the unit of work over SQLAlchemy. Repositories never commit; the unit does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_identity.domain.model import (
    Decider,
    DomainEvent,
    Gender,
    HistoryEntry,
    IdType,
    KeyCounts,
    LinkDecisionKind,
    LinkEvidence,
    LinkReview,
    PartyChange,
    PartyMember,
    PartyState,
    ReviewStatus,
    SourceRecord,
    SourceRecordKey,
    StoredRecord,
)
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.schema import (
    blocking_key,
    link_decision,
    link_review,
    party,
    party_history,
    source_record,
)
from zhike_runtime.db import Database, as_utc, insert_for
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.ids import new_id
from zhike_runtime.unit_of_work import UnitOfWork

# Keys held by more records than this are counted by records, not resolved to parties.
_EXACT_PARTY_COUNT_LIMIT = 200


def _record_values(record: SourceRecord, protection: RecordProtection) -> dict[str, Any]:
    return {
        "full_name": record.full_name,
        "id_type": int(record.id_type) if record.id_type else None,
        **protection.seal(record.key, record.id_number, record.phone, record.email),
        "birth_date": record.birth_date,
        "gender": int(record.gender) if record.gender else None,
        "address": record.address,
    }


def _evidence_values(evidence: LinkEvidence) -> dict[str, Any]:
    return {
        "linked_by": evidence.decided_by.value,
        "matched_system": evidence.matched.source_system if evidence.matched else None,
        "matched_record_id": evidence.matched.source_record_id if evidence.matched else None,
        "match_weight": evidence.weight,
        "model_version": evidence.model_version,
        "steward": evidence.steward,
        "linked_at": evidence.at,
    }


def _stored(row: Any, protection: RecordProtection) -> StoredRecord:
    key = SourceRecordKey(row.source_system, row.source_record_id)
    id_number, phone, email = protection.open(row)
    matched = (
        SourceRecordKey(row.matched_system, row.matched_record_id)
        if row.matched_system is not None
        else None
    )
    return StoredRecord(
        key=key,
        party_id=row.party_id,
        record=SourceRecord(
            key=key,
            full_name=row.full_name,
            id_type=IdType(row.id_type) if row.id_type else None,
            id_number=id_number,
            phone=phone,
            email=email,
            birth_date=row.birth_date,
            gender=Gender(row.gender) if row.gender else None,
            address=row.address,
        ),
        evidence=LinkEvidence(
            decided_by=Decider(row.linked_by),
            matched=matched,
            weight=row.match_weight,
            model_version=row.model_version,
            at=as_utc(row.linked_at or row.created_at),
            steward=row.steward,
        ),
        updated_at=as_utc(row.updated_at),
    )


def _key_clause(keys: Sequence[SourceRecordKey]) -> sa.ColumnElement[bool]:
    return sa.tuple_(source_record.c.source_system, source_record.c.source_record_id).in_(
        [(k.source_system, k.source_record_id) for k in keys]
    )


# The hot path's statements, built once (building a statement costs 0.1-0.2 ms of Python).
_RECORD_BY_KEY = sa.select(source_record).where(
    source_record.c.source_system == sa.bindparam("system"),
    source_record.c.source_record_id == sa.bindparam("record_id"),
)
_RECORDS_OF_PARTIES = (
    sa.select(source_record)
    .where(source_record.c.party_id.in_(sa.bindparam("party_ids", expanding=True)))
    .order_by(source_record.c.source_system, source_record.c.source_record_id)
)
_holders = (
    sa.select(blocking_key.c.source_system, blocking_key.c.source_record_id)
    .where(blocking_key.c.key.in_(sa.bindparam("keys", expanding=True)))
    .distinct()
    .subquery()
)
_RECORDS_WITH_KEYS = (
    sa.select(source_record)
    .join(
        _holders,
        sa.and_(
            _holders.c.source_system == source_record.c.source_system,
            _holders.c.source_record_id == source_record.c.source_record_id,
        ),
    )
    .order_by(source_record.c.source_system, source_record.c.source_record_id)
)
_counted = (
    sa.select(blocking_key.c.key, sa.func.count().label("records"))
    .where(blocking_key.c.key.in_(sa.bindparam("keys", expanding=True)))
    .group_by(blocking_key.c.key)
    .cte("counted")
)
_holder = blocking_key.alias("holder")
_parties_holding = (
    sa.select(sa.func.count(sa.distinct(source_record.c.party_id)))
    .select_from(
        _holder.join(
            source_record,
            sa.and_(
                source_record.c.source_system == _holder.c.source_system,
                source_record.c.source_record_id == _holder.c.source_record_id,
            ),
        )
    )
    .where(_holder.c.key == _counted.c.key)
    .scalar_subquery()
)
_KEY_COUNTS = sa.select(
    _counted.c.key,
    _counted.c.records,
    sa.case(
        (
            sa.and_(
                _counted.c.records.between(2, _EXACT_PARTY_COUNT_LIMIT),
                _counted.c.key.in_(sa.bindparam("by_party", expanding=True)),
            ),
            _parties_holding,
        ),
        else_=_counted.c.records,
    ),
)


def _never_link_names(system: sa.ColumnElement[str], record_id: sa.ColumnElement[str]) -> Any:
    d = link_decision.c
    return (
        sa.select(sa.literal(1))
        .where(
            d.decision == LinkDecisionKind.NEVER.value,
            system == source_record.c.source_system,
            record_id == source_record.c.source_record_id,
        )
        .exists()
    )


_PARTIES_WITH_MEMBERS = (
    sa.select(
        party.c.party_id,
        party.c.created_at,
        party.c.retired_into,
        source_record.c.source_system,
        source_record.c.source_record_id,
        source_record.c.id_type,
        source_record.c.id_number,
        sa.or_(
            _never_link_names(link_decision.c.a_system, link_decision.c.a_record_id),
            _never_link_names(link_decision.c.b_system, link_decision.c.b_record_id),
        ).label("kept_apart"),
    )
    .select_from(party.outerjoin(source_record, source_record.c.party_id == party.c.party_id))
    .where(party.c.party_id.in_(sa.bindparam("party_ids", expanding=True)))
    .order_by(party.c.party_id, source_record.c.source_system, source_record.c.source_record_id)
)


class SqlRecordStore:
    """Source records and the candidate index. Takes and returns plain values and plain blocking
    keys; what reaches the tables is sealed and blinded (protection.py)."""

    def __init__(self, session: AsyncSession, dialect: str, protection: RecordProtection) -> None:
        self._session = session
        self._dialect = dialect
        self._protection = protection

    async def get(self, key: SourceRecordKey) -> StoredRecord | None:
        row = (
            await self._session.execute(
                _RECORD_BY_KEY, {"system": key.source_system, "record_id": key.source_record_id}
            )
        ).first()
        return _stored(row, self._protection) if row else None

    async def add(
        self, record: SourceRecord, party_id: str, evidence: LinkEvidence, at: dt.datetime
    ) -> None:
        await self._session.execute(
            sa.insert(source_record).values(
                source_system=record.key.source_system,
                source_record_id=record.key.source_record_id,
                party_id=party_id,
                created_at=at,
                updated_at=at,
                **_record_values(record, self._protection),
                **_evidence_values(evidence),
            )
        )

    async def update(self, record: SourceRecord, at: dt.datetime) -> None:
        await self._session.execute(
            sa.update(source_record)
            .where(_key_clause([record.key]))
            .values(updated_at=at, **_record_values(record, self._protection))
        )

    async def move(
        self, keys: Sequence[SourceRecordKey], party_id: str, evidence: LinkEvidence | None
    ) -> dict[SourceRecordKey, int]:
        if not keys:
            return {}
        # The increment happens under the row's write lock, so versions follow commit order.
        values: dict[str, Any] = {
            "party_id": party_id,
            "link_version": source_record.c.link_version + 1,
        }
        if evidence is not None:
            values |= _evidence_values(evidence)
        rows = await self._session.execute(
            sa.update(source_record)
            .where(_key_clause(keys))
            .values(**values)
            .returning(
                source_record.c.source_system,
                source_record.c.source_record_id,
                source_record.c.link_version,
            )
        )
        return {
            SourceRecordKey(row.source_system, row.source_record_id): int(row.link_version)
            for row in rows
        }

    async def of_parties(self, party_ids: Sequence[str]) -> list[StoredRecord]:
        if not party_ids:
            return []
        rows = await self._session.execute(_RECORDS_OF_PARTIES, {"party_ids": list(party_ids)})
        return [_stored(row, self._protection) for row in rows]

    async def with_blocking_keys(
        self, keys: Sequence[str], exclude: SourceRecordKey | None
    ) -> list[StoredRecord]:
        if not keys:
            return []
        rows = await self._session.execute(
            _RECORDS_WITH_KEYS, {"keys": self._protection.index_keys(keys)}
        )
        found = [_stored(row, self._protection) for row in rows]
        return [r for r in found if r.key != exclude]

    async def keys_after(self, after: SourceRecordKey | None, limit: int) -> list[SourceRecordKey]:
        c = source_record.c
        query = sa.select(c.source_system, c.source_record_id)
        if after is not None:
            query = query.where(
                sa.tuple_(c.source_system, c.source_record_id)
                > sa.tuple_(sa.literal(after.source_system), sa.literal(after.source_record_id))
            )
        rows = await self._session.execute(
            query.order_by(c.source_system, c.source_record_id).limit(limit)
        )
        return [SourceRecordKey(row[0], row[1]) for row in rows]

    async def get_many(self, keys: Sequence[SourceRecordKey]) -> list[StoredRecord]:
        if not keys:
            return []
        rows = await self._session.execute(
            sa.select(source_record)
            .where(_key_clause(keys))
            .order_by(source_record.c.source_system, source_record.c.source_record_id)
        )
        return [_stored(row, self._protection) for row in rows]

    async def replace_blocking_keys(self, index: Mapping[SourceRecordKey, Sequence[str]]) -> int:
        if not index:
            return 0
        b = blocking_key.c
        dropped = await self._session.execute(
            sa.delete(blocking_key).where(
                sa.tuple_(b.source_system, b.source_record_id).in_(
                    [(k.source_system, k.source_record_id) for k in index]
                )
            )
        )
        rows = [
            {"key": k, "source_system": key.source_system, "source_record_id": key.source_record_id}
            for key, keys in index.items()
            for k in sorted(set(self._protection.index_keys(keys)))
        ]
        if rows:
            await self._session.execute(sa.insert(blocking_key), rows)
        return int(dropped.rowcount)  # type: ignore[attr-defined]

    async def set_blocking_keys(
        self, key: SourceRecordKey, blocking: Sequence[str], *, replacing: bool
    ) -> None:
        if replacing:
            await self._session.execute(
                sa.delete(blocking_key).where(
                    blocking_key.c.source_system == key.source_system,
                    blocking_key.c.source_record_id == key.source_record_id,
                )
            )
        unique = sorted(set(self._protection.index_keys(blocking)))
        if unique:
            # One multi-row INSERT: asyncpg would otherwise run one statement per key.
            await self._session.execute(
                sa.insert(blocking_key).values(
                    [
                        {
                            "key": k,
                            "source_system": key.source_system,
                            "source_record_id": key.source_record_id,
                        }
                        for k in unique
                    ]
                )
            )

    async def key_counts(self, keys: Sequence[str], by_party: Sequence[str] = ()) -> KeyCounts:
        """How many records hold each key's value, and for the keys in `by_party` how many
        parties (for the others, `parties` repeats the records).

        Records are counted from the index alone (cheap however common the value); where a key
        has few records, those are resolved to distinct parties, so that one customer's many
        records do not make his own phone look shared. Above that, records stand in for
        parties: the value is common either way.
        """
        if not keys:
            return KeyCounts({}, {})
        plain = {self._protection.index_key(k): k for k in set(keys)}
        # One round trip: the parties are counted (a join) only for keys with few records.
        rows = await self._session.execute(
            _KEY_COUNTS,
            {
                "keys": sorted(plain),
                "by_party": sorted(set(self._protection.index_keys(by_party))),
            },
        )
        records: dict[str, int] = {}
        parties: dict[str, int] = {}
        for key, held_by_records, held_by_parties in rows:
            records[plain[key]] = int(held_by_records)
            parties[plain[key]] = int(held_by_parties)
        return KeyCounts(records, parties)

    async def estimated_total(self) -> int:
        if self._dialect == "postgresql":
            # The planner's estimate: exact counts of a large table cost a full scan per call,
            # and term frequencies need only the order of magnitude.
            estimate = await self._session.scalar(
                sa.text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'source_record'")
            )
            if estimate is not None and estimate > 1000:
                return int(estimate)
        return int(
            await self._session.scalar(sa.select(sa.func.count()).select_from(source_record)) or 0
        )


class SqlPartyStore:
    def __init__(self, session: AsyncSession, protection: RecordProtection) -> None:
        self._session = session
        self._protection = protection

    async def add(self, party_id: str, at: dt.datetime) -> None:
        await self._session.execute(sa.insert(party).values(party_id=party_id, created_at=at))

    async def get(self, party_id: str) -> PartyState | None:
        found = await self.get_many([party_id])
        return found.get(party_id)

    async def get_many(self, party_ids: Sequence[str]) -> dict[str, PartyState]:
        if not party_ids:
            return {}
        rows = await self._session.execute(
            sa.select(party).where(party.c.party_id.in_(list(party_ids)))
        )
        return {
            row.party_id: PartyState(row.party_id, as_utc(row.created_at), row.retired_into)
            for row in rows
        }

    async def with_members(
        self, party_ids: Sequence[str]
    ) -> tuple[dict[str, PartyState], list[PartyMember]]:
        """The parties and their members in one round trip, each member flagged when a steward's
        "never link" names it (rare: only then are the decisions themselves read)."""
        if not party_ids:
            return {}, []
        rows = await self._session.execute(_PARTIES_WITH_MEMBERS, {"party_ids": list(party_ids)})
        states: dict[str, PartyState] = {}
        members: list[PartyMember] = []
        for row in rows:
            states[row.party_id] = PartyState(
                row.party_id, as_utc(row.created_at), row.retired_into
            )
            if row.source_system is None:
                continue  # a party without records (merged away)
            resident_id = None
            if row.id_type == IdType.RESIDENT_ID and row.id_number:
                resident_id = self._protection.open_id_number(
                    row.source_system, row.source_record_id, row.id_number
                )
            members.append(
                PartyMember(
                    SourceRecordKey(row.source_system, row.source_record_id),
                    row.party_id,
                    resident_id,
                    bool(row.kept_apart),
                )
            )
        return states, members

    async def retire(self, party_id: str, into: str, at: dt.datetime) -> None:
        await self._session.execute(
            sa.update(party)
            .where(party.c.party_id == party_id)
            .values(retired_into=into, retired_at=at)
        )


def _ordered(a: SourceRecordKey, b: SourceRecordKey) -> tuple[SourceRecordKey, SourceRecordKey]:
    return (
        (a, b)
        if (a.source_system, a.source_record_id) <= (b.source_system, b.source_record_id)
        else (b, a)
    )


class SqlDecisionStore:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    async def for_record(self, key: SourceRecordKey) -> dict[SourceRecordKey, LinkDecisionKind]:
        c = link_decision.c
        rows = await self._session.execute(
            sa.select(link_decision).where(
                sa.or_(
                    sa.and_(c.a_system == key.source_system, c.a_record_id == key.source_record_id),
                    sa.and_(c.b_system == key.source_system, c.b_record_id == key.source_record_id),
                )
            )
        )
        result: dict[SourceRecordKey, LinkDecisionKind] = {}
        for row in rows:
            a = SourceRecordKey(row.a_system, row.a_record_id)
            other = SourceRecordKey(row.b_system, row.b_record_id) if a == key else a
            result[other] = LinkDecisionKind(row.decision)
        return result

    async def never_among(
        self, party_ids: Sequence[str]
    ) -> list[tuple[SourceRecordKey, SourceRecordKey]]:
        if not party_ids:
            return []
        c = link_decision.c
        a, b = source_record.alias("a"), source_record.alias("b")
        parties = list(party_ids)
        # Joined by party in the database: listing the parties' members as (system, id) pairs
        # made a statement of hundreds of parameters, prepared anew for each length.
        rows = await self._session.execute(
            sa.select(c.a_system, c.a_record_id, c.b_system, c.b_record_id)
            .select_from(
                link_decision.join(
                    a,
                    sa.and_(a.c.source_system == c.a_system, a.c.source_record_id == c.a_record_id),
                ).join(
                    b,
                    sa.and_(b.c.source_system == c.b_system, b.c.source_record_id == c.b_record_id),
                )
            )
            .where(
                c.decision == LinkDecisionKind.NEVER.value,
                a.c.party_id.in_(parties),
                b.c.party_id.in_(parties),
            )
        )
        return [
            (SourceRecordKey(r.a_system, r.a_record_id), SourceRecordKey(r.b_system, r.b_record_id))
            for r in rows
        ]

    async def record(
        self,
        a: SourceRecordKey,
        b: SourceRecordKey,
        kind: LinkDecisionKind,
        steward: str,
        reason: str,
        at: dt.datetime,
    ) -> None:
        first, second = _ordered(a, b)
        values = {
            "a_system": first.source_system,
            "a_record_id": first.source_record_id,
            "b_system": second.source_system,
            "b_record_id": second.source_record_id,
            "decision": kind.value,
            "steward": steward,
            "reason": reason,
            "decided_at": at,
        }
        statement = insert_for(self._dialect, link_decision).values(values)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["a_system", "a_record_id", "b_system", "b_record_id"],
                set_={
                    "decision": kind.value,
                    "steward": steward,
                    "reason": reason,
                    "decided_at": at,
                },
            )
        )


def _review(row: Any) -> LinkReview:
    return LinkReview(
        review_id=row.review_id,
        record_a=SourceRecordKey(row.a_system, row.a_record_id),
        record_b=SourceRecordKey(row.b_system, row.b_record_id),
        weight=row.match_weight,
        status=ReviewStatus(row.status),
        created_at=as_utc(row.created_at),
    )


class SqlReviewStore:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    async def open(
        self, a: SourceRecordKey, b: SourceRecordKey, weight: float, at: dt.datetime
    ) -> None:
        first, second = _ordered(a, b)
        await self._session.execute(
            insert_for(self._dialect, link_review)
            .values(
                review_id=new_id(),
                a_system=first.source_system,
                a_record_id=first.source_record_id,
                b_system=second.source_system,
                b_record_id=second.source_record_id,
                match_weight=weight,
                status=ReviewStatus.OPEN.value,
                created_at=at,
            )
            .on_conflict_do_nothing()
        )

    async def get(self, review_id: str) -> LinkReview | None:
        row = (
            await self._session.execute(
                sa.select(link_review).where(link_review.c.review_id == review_id)
            )
        ).first()
        return _review(row) if row else None

    async def list_open(
        self, limit: int, after: tuple[dt.datetime, str] | None
    ) -> list[LinkReview]:
        c = link_review.c
        query = sa.select(link_review).where(c.status == ReviewStatus.OPEN.value)
        if after is not None:
            query = query.where(sa.tuple_(c.created_at, c.review_id) > sa.tuple_(*after))
        rows = await self._session.execute(query.order_by(c.created_at, c.review_id).limit(limit))
        return [_review(row) for row in rows]

    async def close(
        self, review_id: str, status: ReviewStatus, steward: str, at: dt.datetime
    ) -> None:
        await self._session.execute(
            sa.update(link_review)
            .where(link_review.c.review_id == review_id)
            .values(status=status.value, steward=steward, resolved_at=at)
        )


class SqlHistoryStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def append(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        await self._session.execute(
            sa.insert(party_history),
            [
                {
                    "party_id": e.party_id,
                    "change": e.change.value,
                    "changed_at": e.at,
                    "decided_by": e.decided_by.value,
                    "steward": e.steward,
                    "model_version": e.model_version,
                    "other_party_id": e.other_party_id,
                    "source_records": [
                        [k.source_system, k.source_record_id] for k in e.source_records
                    ],
                    "reason": e.reason,
                }
                for e in entries
            ],
        )

    async def of_party(self, party_id: str) -> list[HistoryEntry]:
        rows = await self._session.execute(
            sa.select(party_history)
            .where(party_history.c.party_id == party_id)
            .order_by(party_history.c.entry_id)
        )
        return [
            HistoryEntry(
                party_id=row.party_id,
                change=PartyChange(row.change),
                at=as_utc(row.changed_at),
                decided_by=Decider(row.decided_by),
                model_version=row.model_version,
                steward=row.steward,
                other_party_id=row.other_party_id,
                source_records=tuple(SourceRecordKey(s, r) for s, r in row.source_records),
                reason=row.reason,
            )
            for row in rows
        ]


class SqlIdentityUnitOfWork(UnitOfWork):
    """The runtime's unit of work (state and outbox rows in one transaction, advisory locks,
    conflicts as ConcurrentUpdate) with identity's repositories and its event codec."""

    def __init__(
        self,
        database: Database,
        encode: Callable[[DomainEvent], OutgoingEvent],
        on_commit: Callable[[], None],
        protection: RecordProtection,
    ) -> None:
        super().__init__(database, on_commit=on_commit)
        self._encode = encode
        self._protection = protection

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        session, dialect = self.session, self.dialect
        self.records = SqlRecordStore(session, dialect, self._protection)
        self.parties = SqlPartyStore(session, self._protection)
        self.decisions = SqlDecisionStore(session, dialect)
        self.reviews = SqlReviewStore(session, dialect)
        self.history = SqlHistoryStore(session)
        return self

    def record(self, event: DomainEvent) -> None:
        self.stage(self._encode(event))
