"""Bulk load: a set of records resolved in memory, written into a fresh identity store.

`resolve()` groups a whole file at once far faster than linking its records one by one; this
module writes its result into an identity store exactly as the service would have stored it, so
that the service can start on that store and keep linking new records online:

- `party`: one row per distinct party id, created now;
- `source_record`: each record's values as `LinkSourceRecord` stores them (validated: ID number
  normalised, id type and gender as numbers, birth date as a date; ID number, phone and e-mail
  sealed under the active data key). A value the service would
  refuse (an ID number with a bad check character, a birth date that contradicts the ID number,
  a control character…) is stored blank, as `resolve-csv --target` does, and counted in the
  report. The link evidence says the model linked it, with the model version and the time; there
  is no single "matched record" for a group resolved as a whole, so that column stays empty;
- `blocking_key`: the candidate index, `blocking_keys + counting_keys` of the stored values (the
  same features the service computes from stored rows when it scores candidates), blinded as
  the service stores them (storage/protection.py);
- `party_history`: one CREATED entry per party naming all its records.

No outbox events by default. A bulk load is an initial load: the consumers (the profile service)
are loaded from the same source files, or are started after the load and rebuilt from the store;
a million `PartyCreated` and `SourceRecordLinked` events would only replay, through NATS, what
they already hold, and delay the first real event behind them. Given `encode_events` (the
service's event codec), the load writes those two events per party and per record into the
outbox, in the same transaction, for a consumer that must learn of the load through events.

Only a fresh store: the load refuses a store that already holds parties or records (merging a
file into a live store is what `LinkSourceRecord` is for). Everything is written in one
transaction, so a failed load leaves the store empty and can simply be run again.

Speed: on PostgreSQL the rows go in with COPY (asyncpg's `copy_records_to_table` on the
connection SQLAlchemy holds), sorted by primary key; on SQLite with executemany inside the one
transaction. Preparing the rows (validation and features) is spread over processes for large
loads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from zhike_identity.domain.matching.blocking import blocking_keys, counting_keys
from zhike_identity.domain.matching.features import RawRecord, extract_features
from zhike_identity.domain.matching.resolver import Resolution
from zhike_identity.domain.model import (
    Decider,
    DomainEvent,
    IdType,
    PartyChange,
    PartyCreated,
    SourceRecord,
    SourceRecordInput,
    SourceRecordKey,
    SourceRecordLinked,
)
from zhike_identity.domain.normalise import Unusable, infer_id_kind, parse_date, parse_gender
from zhike_identity.domain.placement import raw_record
from zhike_identity.domain.validation import validate_source_record
from zhike_identity.settings import DEFAULT_BUSINESS_TIME_ZONE
from zhike_identity.storage import MIGRATIONS
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.schema import blocking_key, party, party_history, source_record
from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database
from zhike_runtime.errors import FieldViolation, InvalidArgument
from zhike_runtime.events.outbox import OutgoingEvent, add_to_outbox
from zhike_runtime.migrations import apply_migrations

# The service's default: a load without the service's settings checks birth dates by it.
_BANK_ZONE = ZoneInfo(DEFAULT_BUSINESS_TIME_ZONE)

# Values of `source_record` columns a record's refused field leaves blank ("" or NULL).
OPTIONAL_FIELDS = (
    "full_name",
    "id_number",
    "phone",
    "email",
    "birth_date",
    "gender",
    "address",
)
_KEY_FIELDS = frozenset({"source_system", "source_record_id"})
HISTORY_REASON = "initial bulk load"
# Below this many records, preparing in this process is faster than starting workers.
_PARALLEL_FROM = 50_000
_CHUNK = 10_000
# Database() gives every PostgreSQL statement 30 s (command_timeout); a COPY of millions of rows
# or the VACUUM after it needs longer.
_BULK_TIMEOUT = 3600.0

_RECORD_COLUMNS = (
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
    "created_at",
    "updated_at",
    "linked_by",
    "matched_system",
    "matched_record_id",
    "match_weight",
    "model_version",
    "steward",
    "linked_at",
)
_KEY_COLUMNS = ("key", "source_system", "source_record_id")
_PARTY_COLUMNS = ("party_id", "created_at")
_HISTORY_COLUMNS = (
    "party_id",
    "change",
    "changed_at",
    "decided_by",
    "steward",
    "model_version",
    "other_party_id",
    "source_records",
    "reason",
)


class StoreNotEmpty(ValueError):
    """The store already holds parties or records: a bulk load is only for a fresh store."""

    def __init__(self, parties: int, records: int) -> None:
        self.parties = parties
        self.records = records
        super().__init__(
            f"the identity store already holds {parties} parties and {records} source records; "
            "a bulk load writes only into a fresh store (link into a live one with "
            "LinkSourceRecord)"
        )


class UnstorableKey(ValueError):
    """A record's source key is one the service refuses: it cannot be stored at all."""

    def __init__(self, index: int, error: InvalidArgument) -> None:
        self.index = index
        self.violations = error.violations
        super().__init__(f"record {index}: {error}")


@dataclass(frozen=True)
class BulkReport:
    records: int  # source_record rows written
    parties: int
    blocking_keys: int
    blanked: Mapping[str, int]  # per field: records stored with it blank (the service refuses it)
    records_with_blanked_fields: int
    duplicate_keys: int  # input rows that repeated an earlier row's key (the last one is kept)
    events: int  # outbox rows written (0 without encode_events)
    seconds: float
    phases: Mapping[str, float] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class StoredForm:
    """A record as the service would store it, with the fields it refused (stored blank)."""

    record: SourceRecord
    blanked: frozenset[str]


def service_record(raw: RawRecord, today: dt.date) -> StoredForm:
    """Validates a batch record the way `LinkSourceRecord` would, blanking what it refuses.

    The text form is read as the batch resolver reads it: the id type defaults to the one the
    number's shape says (else OTHER), birth dates in any form banks hold, gender codes M/F, 男/女,
    1/2. Raises `InvalidArgument` when the source key itself is refused.
    """
    blanked: set[str] = set()
    for _ in range(len(OPTIONAL_FIELDS) + 1):
        candidate = _service_input(raw, blanked, today)
        try:
            record = validate_source_record(candidate, today)
        except InvalidArgument as error:
            refused = {v.field.rsplit(".", 1)[-1] for v in error.violations}
            if refused & _KEY_FIELDS:
                raise
            if "id_type" in refused:
                refused = (refused - {"id_type"}) | {"id_number"}  # they go together
            if refused <= blanked:
                raise  # nothing left to blank: not a refusal this module knows how to handle
            blanked |= refused
            continue
        return StoredForm(record, frozenset(blanked))
    raise AssertionError("every optional field blanked and still refused")


def _service_input(raw: RawRecord, blanked: set[str], today: dt.date) -> SourceRecordInput:
    def value(name: str) -> str:
        return "" if name in blanked else str(getattr(raw, name))

    id_type = 0
    id_number = value("id_number")
    if id_number.strip():
        kind = raw.id_type.strip().upper() or infer_id_kind(id_number) or "OTHER"
        id_type = int(IdType[kind]) if kind in IdType.__members__ else int(IdType.OTHER)
    else:
        id_number = ""
    birth_date = None
    if value("birth_date").strip():
        try:
            born = parse_date(raw.birth_date, today)
            birth_date = (born.year, born.month, born.day)
        except Unusable:
            blanked.add("birth_date")  # no date the service could be sent
    gender = 0
    if value("gender").strip():
        try:
            parsed = parse_gender(raw.gender)
            gender = int(parsed) if parsed is not None else 0  # a code for "unknown"
        except Unusable:
            blanked.add("gender")
    return SourceRecordInput(
        source_system=raw.source,
        source_record_id=raw.source_id,
        full_name=value("full_name"),
        id_type=id_type,
        id_number=id_number,
        phone=value("phone"),
        email=value("email"),
        birth_date=birth_date,
        gender=gender,
        address=value("address"),
    )


def index_keys(record: SourceRecord) -> list[str]:
    """The record's rows in the candidate index, as the service computes them from stored values."""
    features = extract_features(raw_record(record))
    return sorted(set(blocking_keys(features) + counting_keys(features)))


@dataclass(frozen=True)
class _Prepared:
    index: int
    record: SourceRecord
    sealed: dict[str, str]  # id_number, phone, email as stored
    blanked: frozenset[str]
    keys: list[str]  # as stored: blinded


def _prepare_chunk(
    chunk: Sequence[tuple[int, RawRecord]], today: dt.date, protection: RecordProtection
) -> tuple[list[_Prepared], tuple[int, tuple[FieldViolation, ...]] | None]:
    """Runs in a worker process for large loads (sealing and hashing there too): returns plain
    data, never an exception."""
    prepared: list[_Prepared] = []
    for index, raw in chunk:
        try:
            form = service_record(raw, today)
        except InvalidArgument as error:
            return prepared, (index, error.violations)
        r = form.record
        prepared.append(
            _Prepared(
                index,
                r,
                protection.seal(r.key, r.id_number, r.phone, r.email),
                form.blanked,
                protection.index_keys(index_keys(r)),
            )
        )
    return prepared, None


def _chunks(records: Sequence[RawRecord], size: int) -> Iterator[list[tuple[int, RawRecord]]]:
    for start in range(0, len(records), size):
        yield [(i, records[i]) for i in range(start, min(start + size, len(records)))]


async def _prepare(
    records: Sequence[RawRecord], today: dt.date, workers: int, protection: RecordProtection
) -> list[_Prepared]:
    results: list[tuple[list[_Prepared], tuple[int, tuple[FieldViolation, ...]] | None]]
    if workers <= 1 or len(records) < _PARALLEL_FROM:
        results = [_prepare_chunk(chunk, today, protection) for chunk in _chunks(records, _CHUNK)]
    else:
        loop = asyncio.get_running_loop()
        # Spawned, not forked: the caller may hold threads (gRPC, aiosqlite) a fork would copy.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, _prepare_chunk, chunk, today, protection)
                    for chunk in _chunks(records, _CHUNK)
                )
            )
    prepared: list[_Prepared] = []
    for done, refused in results:
        if refused is not None:
            index, violations = refused
            raise UnstorableKey(index, InvalidArgument(list(violations)))
        prepared.extend(done)
    return prepared


@dataclass
class _Rows:
    parties: list[tuple[Any, ...]]
    records: list[tuple[Any, ...]]
    keys: list[tuple[str, str, str]]
    history: list[tuple[Any, ...]]
    events: list[DomainEvent]
    blanked: Counter[str]
    records_with_blanked_fields: int
    duplicate_keys: int


def _rows(
    prepared: Sequence[_Prepared],
    party_ids: Sequence[str],
    *,
    model_version: str,
    now: dt.datetime,
    publish_events: bool,
) -> _Rows:
    # The same source key twice is one record: like an update, the later values stand.
    latest: dict[SourceRecordKey, _Prepared] = {}
    for item in prepared:
        latest[item.record.key] = item
    kept = sorted(
        latest.values(), key=lambda p: (p.record.key.source_system, p.record.key.source_record_id)
    )
    members: dict[str, list[SourceRecordKey]] = {}
    records: list[tuple[Any, ...]] = []
    keys: list[tuple[str, str, str]] = []
    blanked: Counter[str] = Counter()
    with_blanks = 0
    events: list[DomainEvent] = []
    for item in kept:
        r = item.record
        party_id = party_ids[item.index]
        members.setdefault(party_id, []).append(r.key)
        records.append(
            (
                r.key.source_system,
                r.key.source_record_id,
                party_id,
                r.full_name,
                int(r.id_type) if r.id_type else None,
                item.sealed["id_number"],
                item.sealed["phone"],
                item.sealed["email"],
                r.birth_date,
                int(r.gender) if r.gender else None,
                r.address,
                now,
                now,
                Decider.MODEL.value,
                None,
                None,
                None,
                model_version,
                "",
                now,
            )
        )
        keys.extend((k, r.key.source_system, r.key.source_record_id) for k in item.keys)
        if item.blanked:
            with_blanks += 1
            blanked.update(item.blanked)
    keys.sort()
    ordered_parties = sorted(members)
    parties = [(p, now) for p in ordered_parties]
    history = [
        (
            p,
            PartyChange.CREATED.value,
            now,
            Decider.MODEL.value,
            "",
            model_version,
            None,
            [[k.source_system, k.source_record_id] for k in members[p]],
            HISTORY_REASON,
        )
        for p in ordered_parties
    ]
    if publish_events:
        for p in ordered_parties:
            events.append(PartyCreated(p, now))
            events.extend(SourceRecordLinked(p, k, now) for k in members[p])
    return _Rows(
        parties=parties,
        records=records,
        keys=keys,
        history=history,
        events=events,
        blanked=blanked,
        records_with_blanked_fields=with_blanks,
        duplicate_keys=len(prepared) - len(kept),
    )


async def write_store(
    database_url: str,
    records: Sequence[RawRecord],
    resolution: Resolution,
    *,
    keys: FieldKeys,
    model_version: str,
    encode_events: Callable[[DomainEvent], OutgoingEvent] | None = None,
    workers: int | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    business_zone: dt.tzinfo = _BANK_ZONE,
) -> BulkReport:
    """Writes `records`, grouped as `resolution` says, into the fresh store at `database_url`.

    Applies the migrations first. Raises `StoreNotEmpty` (a ValueError) if the store already
    holds parties or records, and `UnstorableKey` if a record's source key is one the service
    refuses; either way nothing is written. `keys` seal the personal data and blind the index
    as the service would. With `encode_events` (the service's codec, as app.wire hands it to the
    unit of work) the load also stages PartyCreated and SourceRecordLinked in the outbox.
    """
    if len(resolution.party_ids) != len(records):
        raise ValueError(
            f"the resolution assigns {len(resolution.party_ids)} parties to {len(records)} records"
        )
    started = time.perf_counter()
    phases: dict[str, float] = {}
    now = clock()
    # The bank's day, as the service checks birth dates (a child born this morning in Shanghai
    # is not born in the future because it is still yesterday in UTC).
    today = now.astimezone(business_zone).date()
    prepared = await _prepare(
        records, today, workers or os.cpu_count() or 1, RecordProtection(keys)
    )
    rows = _rows(
        prepared,
        resolution.party_ids,
        model_version=model_version,
        now=now,
        publish_events=encode_events is not None,
    )
    del prepared
    phases["prepare"] = time.perf_counter() - started
    outgoing = [encode_events(event) for event in rows.events] if encode_events else []

    database = Database(database_url)
    try:
        mark = time.perf_counter()
        await apply_migrations(database, MIGRATIONS, keys)
        phases["migrations"] = time.perf_counter() - mark
        mark = time.perf_counter()
        async with database.engine.begin() as connection:
            await _refuse_unless_empty(connection, database.is_postgres)
            if database.is_postgres:
                await _copy_all(connection, rows)
            else:
                await _insert_all(connection, rows)
            if outgoing:
                await _stage_events(connection, outgoing)
        phases["write"] = time.perf_counter() - mark
        if database.is_postgres:
            mark = time.perf_counter()
            await _vacuum_analyze(database)
            phases["vacuum_analyze"] = time.perf_counter() - mark
    finally:
        await database.dispose()
    return BulkReport(
        records=len(rows.records),
        parties=len(rows.parties),
        blocking_keys=len(rows.keys),
        blanked=dict(rows.blanked),
        records_with_blanked_fields=rows.records_with_blanked_fields,
        duplicate_keys=rows.duplicate_keys,
        events=len(outgoing),
        seconds=time.perf_counter() - started,
        phases=phases,
    )


async def ensure_fresh(database_url: str, keys: FieldKeys) -> None:
    """Applies the migrations and raises `StoreNotEmpty` unless the store is empty: a check a
    caller can make before hours of resolution (`write_store` checks again, under a lock)."""
    database = Database(database_url)
    try:
        await apply_migrations(database, MIGRATIONS, keys)
        async with database.engine.begin() as connection:
            await _refuse_unless_empty(connection, database.is_postgres)
    finally:
        await database.dispose()


async def _refuse_unless_empty(connection: AsyncConnection, postgres: bool) -> None:
    if postgres:
        # Until this transaction ends no one else writes parties or records (a service already
        # running on the store waits), so the store stays empty between this check and the load.
        await connection.execute(sa.text("LOCK TABLE party, source_record IN EXCLUSIVE MODE"))
    parties = await connection.scalar(sa.select(sa.func.count()).select_from(party)) or 0
    held = await connection.scalar(sa.select(sa.func.count()).select_from(source_record)) or 0
    if parties or held:
        raise StoreNotEmpty(int(parties), int(held))


async def _copy_all(connection: AsyncConnection, rows: _Rows) -> None:
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # asyncpg.Connection, inside this transaction
    for table, columns, values in (
        ("party", _PARTY_COLUMNS, rows.parties),
        ("source_record", _RECORD_COLUMNS, rows.records),
        ("blocking_key", _KEY_COLUMNS, rows.keys),
        (
            "party_history",
            _HISTORY_COLUMNS,
            [(*h[:7], json.dumps(h[7], ensure_ascii=False), h[8]) for h in rows.history],
        ),
    ):
        await driver.copy_records_to_table(
            table, records=values, columns=columns, timeout=_BULK_TIMEOUT
        )


async def _insert_all(connection: AsyncConnection, rows: _Rows) -> None:
    for table, columns, values in (
        (party, _PARTY_COLUMNS, rows.parties),
        (source_record, _RECORD_COLUMNS, rows.records),
        (blocking_key, _KEY_COLUMNS, rows.keys),
        (party_history, _HISTORY_COLUMNS, rows.history),
    ):
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            await connection.execute(
                table.insert(), [dict(zip(columns, row, strict=True)) for row in chunk]
            )


async def _stage_events(connection: AsyncConnection, outgoing: Sequence[OutgoingEvent]) -> None:
    # A session joined to this connection's transaction: the outbox rows commit with the load.
    session = AsyncSession(bind=connection)
    try:
        for start in range(0, len(outgoing), _CHUNK):
            await add_to_outbox(session, outgoing[start : start + _CHUNK])
        await session.flush()
    finally:
        await session.close()


async def _vacuum_analyze(database: Database) -> None:
    """Fresh planner statistics and visibility map: without them the first online queries plan
    against empty tables, and every first read of a page writes its hint bits."""
    async with database.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection  # outside any transaction, as VACUUM must be
        await driver.execute(
            "VACUUM (ANALYZE) party, source_record, blocking_key, party_history",
            timeout=_BULK_TIMEOUT,
        )
