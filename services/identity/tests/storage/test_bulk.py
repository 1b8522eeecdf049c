"""Bulk load of a resolved set into a fresh store: the same bodies run on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from zhike.identity.v1 import events_pb2
from zhike_identity.app import DEFINITION
from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.resolver import Resolution, resolve
from zhike_identity.domain.model import SourceRecord, SourceRecordInput
from zhike_identity.domain.resident_id import check_character
from zhike_identity.storage.bulk import StoreNotEmpty, index_keys, service_record, write_store
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.schema import blocking_key, party, party_history, source_record
from zhike_identity.transport import codec
from zhike_identity_evaluation import generator
from zhike_runtime.db import Database
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.ids import new_id
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.services import fixed_field_keys

from ..use_cases import UseCases, use_cases

KEYS = fixed_field_keys()
PROTECTION = RecordProtection(KEYS)
PERSONS = 120  # about 260 records
SEED = 7
VERSION = "bulk-test"


def generated() -> list[RawRecord]:
    rows, _truth = generator.generate(PERSONS, SEED)
    return [RawRecord(*dataclasses.astuple(row)) for row in rows]


def as_input(record: SourceRecord, source_system: str, source_record_id: str) -> SourceRecordInput:
    born = record.birth_date
    return SourceRecordInput(
        source_system=source_system,
        source_record_id=source_record_id,
        full_name=record.full_name,
        id_type=int(record.id_type) if record.id_type else 0,
        id_number=record.id_number,
        phone=record.phone,
        email=record.email,
        birth_date=(born.year, born.month, born.day) if born else None,
        gender=int(record.gender) if record.gender else 0,
        address=record.address,
    )


def stored_person_with_a_resident_id(records: list[RawRecord]) -> tuple[int, SourceRecord]:
    """A stored record with a valid resident ID (its index, as the store holds it)."""
    return next(
        (i, service_record(r, dt.date.today()).record)
        for i, r in enumerate(records)
        if r.id_type == "RESIDENT_ID" and r.full_name
    )


def identity_service(database: Database) -> UseCases:
    return use_cases(database, PROTECTION)


async def count(database: Database, table: sa.Table) -> int:
    async with database.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def stored_parties(database: Database) -> dict[tuple[str, str], str]:
    async with database.session() as session:
        rows = await session.execute(
            sa.select(
                source_record.c.source_system,
                source_record.c.source_record_id,
                source_record.c.party_id,
            )
        )
        return {(row[0], row[1]): row[2] for row in rows}


async def test_bulk_load_stores_every_record_in_its_resolved_party(database_url: str) -> None:
    records = generated()
    resolution = resolve(records)

    report = await write_store(database_url, records, resolution, keys=KEYS, model_version=VERSION)

    database = Database(database_url)
    try:
        expected_keys = sum(
            len(index_keys(service_record(r, dt.date.today()).record)) for r in records
        )
        assert report.records == len(records) == await count(database, source_record)
        assert report.parties == len(set(resolution.party_ids)) == await count(database, party)
        assert report.blocking_keys == expected_keys == await count(database, blocking_key)
        assert await count(database, party_history) == report.parties
        assert await count(database, outbox_event) == 0  # an initial load publishes nothing
        assert report.events == 0
        stored = await stored_parties(database)
        assert stored == {
            (r.source, r.source_id): p for r, p in zip(records, resolution.party_ids, strict=True)
        }
        async with database.session() as session:
            evidence = (
                await session.execute(
                    sa.select(
                        source_record.c.linked_by,
                        source_record.c.model_version,
                        source_record.c.linked_at,
                    ).distinct()
                )
            ).all()
        assert [(e[0], e[1]) for e in evidence] == [("model", VERSION)]
        assert evidence[0][2] is not None
    finally:
        await database.dispose()


async def test_a_service_started_on_the_bulk_store_links_a_stored_persons_new_record(
    database_url: str,
) -> None:
    records = generated()
    resolution = resolve(records)
    await write_store(database_url, records, resolution, keys=KEYS, model_version=VERSION)
    # A stored record with a valid resident ID: the same person, seen by a new source system.
    index, known = stored_person_with_a_resident_id(records)
    assert known.id_number

    database = Database(database_url)
    await apply_migrations(database, DEFINITION.migrations)  # already applied: a no-op
    service = identity_service(database)
    try:
        outcome = await service.linking.link_source_record(
            as_input(known, "branch_wealth", "W-NEW-1")
        )
        assert outcome.party_id == resolution.party_ids[index]
        assert not outcome.party_created
        assert await count(database, party) == len(set(resolution.party_ids))
        assert (await stored_parties(database))[("branch_wealth", "W-NEW-1")] == outcome.party_id
    finally:
        await database.dispose()


async def test_bulk_load_refuses_a_store_that_already_holds_records(database_url: str) -> None:
    records = generated()
    resolution = resolve(records)
    await write_store(database_url, records, resolution, keys=KEYS, model_version=VERSION)

    more = [dataclasses.replace(r, source_id=f"AGAIN-{r.source_id}") for r in records]
    with pytest.raises(StoreNotEmpty) as refused:
        await write_store(database_url, more, resolve(more), keys=KEYS, model_version=VERSION)

    assert isinstance(refused.value, ValueError)
    assert refused.value.records == len(records)
    database = Database(database_url)
    try:
        assert await count(database, source_record) == len(records)
    finally:
        await database.dispose()


async def test_values_the_service_refuses_are_stored_blank_and_counted(database_url: str) -> None:
    body = "11010519491231002"
    wrong = "0" if check_character(body) != "0" else "1"
    records = [
        RawRecord("cards", "C1", full_name="刘建军", id_type="RESIDENT_ID", id_number=body + wrong),
        RawRecord("loans", "L1", full_name="刘建军", birth_date="1949-12-31", gender="男"),
    ]
    resolution = Resolution(party_ids=[new_id(), new_id()], problems=[], reviews=[])

    report = await write_store(database_url, records, resolution, keys=KEYS, model_version=VERSION)

    assert report.blanked == {"id_number": 1}
    assert report.records_with_blanked_fields == 1
    database = Database(database_url)
    try:
        async with database.session() as session:
            rows = {
                row.source_system: row for row in await session.execute(sa.select(source_record))
            }
        assert (rows["cards"].id_number, rows["cards"].id_type) == ("", None)
        assert rows["cards"].full_name == "刘建军"
        assert rows["loans"].birth_date == dt.date(1949, 12, 31)
        assert rows["loans"].gender == 1
    finally:
        await database.dispose()


async def test_a_birth_date_of_the_banks_today_is_kept_while_utc_is_still_yesterday(
    database_url: str,
) -> None:
    # 17:00 UTC on 28 February is 01:00 on 1 March in Shanghai: the child born this morning
    # there is not born in the future, as LinkSourceRecord already holds.
    records = [RawRecord("loans", "L1", full_name="刘小军", birth_date="2026-03-01", gender="男")]
    resolution = Resolution(party_ids=[new_id()], problems=[], reviews=[])

    report = await write_store(
        database_url,
        records,
        resolution,
        keys=KEYS,
        model_version=VERSION,
        clock=lambda: dt.datetime(2026, 2, 28, 17, 0, tzinfo=dt.UTC),
    )

    assert report.blanked == {}
    database = Database(database_url)
    try:
        async with database.session() as session:
            born = await session.scalar(sa.select(source_record.c.birth_date))
        assert born == dt.date(2026, 3, 1)
    finally:
        await database.dispose()


async def test_publish_events_stages_party_created_and_record_linked(database_url: str) -> None:
    records = generated()
    resolution = resolve(records)

    report = await write_store(
        database_url,
        records,
        resolution,
        keys=KEYS,
        model_version=VERSION,
        encode_events=codec.outgoing_event,
    )

    database = Database(database_url)
    try:
        async with database.session() as session:
            types = [row[0] for row in await session.execute(sa.select(outbox_event.c.event_type))]
        assert types.count(events_pb2.PartyCreated.DESCRIPTOR.full_name) == report.parties
        assert types.count(events_pb2.SourceRecordLinked.DESCRIPTOR.full_name) == report.records
        assert report.events == len(types)
    finally:
        await database.dispose()
