"""Source records (`source_record`) and the candidate index over them (`blocking_key`)."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.model import (
    Decider,
    Gender,
    IdType,
    KeyCounts,
    LinkEvidence,
    SourceRecord,
    SourceRecordKey,
    StoredRecord,
)
from zhike_identity.domain.placement import StoredCandidate
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.schema import blocking_key, source_record
from zhike_runtime.db import as_utc

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


# A stored id_type or gender as `raw_record` writes it (IdType(1) → "RESIDENT_ID", 2 → "2").
_ID_TYPE_TEXT = {int(kind): kind.name for kind in IdType}
_GENDER_TEXT = {int(gender): str(int(gender)) for gender in Gender}
# The columns a candidate is made of, in the order _candidates unpacks them.
_CANDIDATE_COLUMNS = (
    "source_system",
    "source_record_id",
    "party_id",
    "full_name",
    "id_type",
    "id_number",
    "phone",
    "email",
    "birth_date",
    "gender",
    "address",
)


def _candidates(
    rows: sa.Result[Any], key: SourceRecordKey, protection: RecordProtection
) -> tuple[StoredRecord | None, list[StoredCandidate]]:
    """The record `key` (if among the rows) as a StoredRecord and the others as candidates,
    their values read by position: by name, SQLAlchemy's rows cost about as much as the rest
    of turning a row into a record."""
    at = {name: n for n, name in enumerate(rows.keys())}
    values_of = operator.itemgetter(*(at[name] for name in _CANDIDATE_COLUMNS))
    itself: StoredRecord | None = None
    found: dict[SourceRecordKey, StoredCandidate] = {}
    for row in rows:
        (system, record_id, party_id, full_name, id_type, sealed_id, sealed_phone, sealed_email,
         born, gender, address) = values_of(row)  # fmt: skip
        if system == key.source_system and record_id == key.source_record_id:
            itself = _stored(row, protection)
            continue
        id_number, phone, email = protection.open_values(
            system, record_id, sealed_id, sealed_phone, sealed_email
        )
        raw = RawRecord(
            source=system,
            source_id=record_id,
            full_name=full_name,
            id_type=(_ID_TYPE_TEXT.get(id_type) or IdType(id_type).name) if id_type else "",
            id_number=id_number,
            phone=phone,
            email=email,
            birth_date=born.isoformat() if born else "",
            gender=(_GENDER_TEXT.get(gender) or str(int(Gender(gender)))) if gender else "",
            address=address,
        )
        candidate_key = SourceRecordKey(system, record_id)
        found[candidate_key] = StoredCandidate(candidate_key, party_id, raw)
    # In the database's key order.
    return itself, list(found.values())


def _key_clause(keys: Sequence[SourceRecordKey]) -> sa.ColumnElement[bool]:
    return sa.tuple_(source_record.c.source_system, source_record.c.source_record_id).in_(
        [(k.source_system, k.source_record_id) for k in keys]
    )


# The hot path's statements, built once (building a statement costs 0.1-0.2 ms of Python).
_RECORD_BY_KEY = sa.select(source_record).where(
    source_record.c.source_system == sa.bindparam("system"),
    source_record.c.source_record_id == sa.bindparam("record_id"),
)


def _records_with_every_key(keys: int) -> sa.Select[Any]:
    """Records indexed under each of `keys` keys (bound as key_0, key_1…), in key order, at most
    `limit`: driven by the index rows of key_0 (in key order already, so the limit stops the
    read), each checked for the others by their primary key."""
    c = source_record.c
    holder = blocking_key.alias("holder")
    query = (
        sa.select(source_record)
        .join(
            holder,
            sa.and_(
                holder.c.source_system == c.source_system,
                holder.c.source_record_id == c.source_record_id,
            ),
        )
        .where(holder.c.key == sa.bindparam("key_0"))
    )
    for n in range(1, keys):
        also = blocking_key.alias(f"also_{n}")
        query = query.where(
            sa.exists().where(
                also.c.key == sa.bindparam(f"key_{n}"),
                also.c.source_system == c.source_system,
                also.c.source_record_id == c.source_record_id,
            )
        )
    return query.order_by(c.source_system, c.source_record_id).limit(
        sa.bindparam("limit", type_=sa.Integer)
    )


# By one key (an ID number, a phone, an e-mail) or two (a name and a birth date).
_RECORDS_WITH_EVERY_KEY = {n: _records_with_every_key(n) for n in (1, 2)}


def _one_of(column: sa.ColumnElement[str], name: str, postgres: bool) -> sa.ColumnElement[bool]:
    if postgres:
        # `= ANY(array)`: one text whatever the number of values, so it is rendered once and
        # prepared once per connection (an expanded IN is rendered on every call and prepared
        # anew for every length).
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(sa.String())))
    return column.in_(sa.bindparam(name, expanding=True))


@dataclass(frozen=True)
class _HotStatements:
    """The statements every link runs, in the form that suits each database."""

    records_of_parties: sa.Executable
    record_and_records_with_keys: sa.Executable
    key_counts: sa.Executable


def _hot_statements(postgres: bool) -> _HotStatements:
    holders = (
        sa.select(blocking_key.c.source_system, blocking_key.c.source_record_id)
        .where(_one_of(blocking_key.c.key, "keys", postgres))
        .distinct()
        .subquery()
    )
    counted = (
        sa.select(blocking_key.c.key, sa.func.count().label("records"))
        .where(_one_of(blocking_key.c.key, "keys", postgres))
        .group_by(blocking_key.c.key)
        .cte("counted")
    )
    holder = blocking_key.alias("holder")
    parties_holding = (
        sa.select(sa.func.count(sa.distinct(source_record.c.party_id)))
        .select_from(
            holder.join(
                source_record,
                sa.and_(
                    source_record.c.source_system == holder.c.source_system,
                    source_record.c.source_record_id == holder.c.source_record_id,
                ),
            )
        )
        .where(holder.c.key == counted.c.key)
        .scalar_subquery()
    )
    return _HotStatements(
        records_of_parties=(
            sa.select(source_record)
            .where(_one_of(source_record.c.party_id, "party_ids", postgres))
            .order_by(source_record.c.source_system, source_record.c.source_record_id)
        ),
        # The record itself (if stored) and the records holding any of the keys, in one query:
        # the lookup of the record a link starts with rides along with its candidates.
        record_and_records_with_keys=sa.union_all(
            _RECORD_BY_KEY,
            sa.select(source_record).join(
                holders,
                sa.and_(
                    holders.c.source_system == source_record.c.source_system,
                    holders.c.source_record_id == source_record.c.source_record_id,
                ),
            ),
        ).order_by(sa.literal_column("source_system"), sa.literal_column("source_record_id")),
        key_counts=sa.select(
            counted.c.key,
            counted.c.records,
            sa.case(
                (
                    sa.and_(
                        counted.c.records.between(2, _EXACT_PARTY_COUNT_LIMIT),
                        _one_of(counted.c.key, "by_party", postgres),
                    ),
                    parties_holding,
                ),
                else_=counted.c.records,
            ),
        ),
    )


_HOT = {"postgresql": _hot_statements(postgres=True), "sqlite": _hot_statements(postgres=False)}


# A new record and its index rows in one statement (PostgreSQL): one round trip fewer per link.
_ADDED_COLUMNS = (
    "source_system",
    "source_record_id",
    "party_id",
    "created_at",
    "updated_at",
    "full_name",
    "id_type",
    "id_number",
    "phone",
    "email",
    "birth_date",
    "gender",
    "address",
    "linked_by",
    "matched_system",
    "matched_record_id",
    "match_weight",
    "model_version",
    "steward",
    "linked_at",
)
_ADD_INDEXED_POSTGRES = sa.text(
    f"WITH added AS (INSERT INTO source_record ({', '.join(_ADDED_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _ADDED_COLUMNS)}) "
    "RETURNING source_system, source_record_id) "
    "INSERT INTO blocking_key (key, source_system, source_record_id) "
    "SELECT k, added.source_system, added.source_record_id "
    "FROM added CROSS JOIN unnest(CAST(:keys AS varchar[])) AS k"
)
_ADD_RECORD = sa.insert(source_record)
# The same text whatever the number of keys: prepared once per connection. (A multi-row VALUES
# was a new statement, compiled and prepared again, for each number of keys.)
_INDEX_POSTGRES = sa.text(
    "INSERT INTO blocking_key (key, source_system, source_record_id) "
    "SELECT k, :system, :record_id FROM unnest(CAST(:keys AS varchar[])) AS k"
)


class SqlRecordStore:
    """Source records and the candidate index. Takes and returns plain values and plain blocking
    keys; what reaches the tables is sealed and blinded (protection.py)."""

    def __init__(self, session: AsyncSession, dialect: str, protection: RecordProtection) -> None:
        self._session = session
        self._dialect = dialect
        self._protection = protection
        self._hot = _HOT[dialect]

    async def get(self, key: SourceRecordKey) -> StoredRecord | None:
        row = (
            await self._session.execute(
                _RECORD_BY_KEY, {"system": key.source_system, "record_id": key.source_record_id}
            )
        ).first()
        return _stored(row, self._protection) if row else None

    async def add(
        self,
        record: SourceRecord,
        party_id: str,
        evidence: LinkEvidence,
        at: dt.datetime,
        blocking: Sequence[str] = (),
    ) -> None:
        values = {
            "source_system": record.key.source_system,
            "source_record_id": record.key.source_record_id,
            "party_id": party_id,
            "created_at": at,
            "updated_at": at,
            **_record_values(record, self._protection),
            **_evidence_values(evidence),
        }
        if self._dialect == "postgresql":
            keys = sorted(set(self._protection.index_keys(blocking)))
            await self._session.execute(_ADD_INDEXED_POSTGRES, values | {"keys": keys})
            return
        await self._session.execute(_ADD_RECORD, values)
        if blocking:
            await self.set_blocking_keys(record.key, blocking, replacing=False)

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
        rows = await self._session.execute(
            self._hot.records_of_parties, {"party_ids": list(party_ids)}
        )
        return [_stored(row, self._protection) for row in rows]

    async def with_every_key(self, keys: Sequence[str], limit: int) -> list[StoredRecord]:
        unique = list(dict.fromkeys(keys))
        if not unique or limit <= 0:
            return []
        statement = _RECORDS_WITH_EVERY_KEY.get(len(unique))
        if statement is None:
            statement = _records_with_every_key(len(unique))
        values: dict[str, Any] = {
            f"key_{n}": k for n, k in enumerate(self._protection.index_keys(unique))
        }
        rows = await self._session.execute(statement, values | {"limit": limit})
        return [_stored(row, self._protection) for row in rows]

    async def with_candidates(
        self, key: SourceRecordKey, keys: Sequence[str]
    ) -> tuple[StoredRecord | None, list[StoredCandidate]]:
        rows = await self._session.execute(
            self._hot.record_and_records_with_keys,
            {
                "system": key.source_system,
                "record_id": key.source_record_id,
                "keys": self._protection.index_keys(keys),
            },
        )
        return _candidates(rows, key, self._protection)

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
        if unique and self._dialect == "postgresql":
            await self._session.execute(
                _INDEX_POSTGRES,
                {"system": key.source_system, "record_id": key.source_record_id, "keys": unique},
            )
        elif unique:
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
            self._hot.key_counts,
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
