"""Profile use cases over real storage: the same bodies run on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from zhike_profile.app import DEFINITION
from zhike_profile.domain import service
from zhike_profile.domain.model import LinkedSourceRecord, Profile
from zhike_profile.domain.service import ProfileQueries
from zhike_profile.storage.repository import SqlProfileRepository, profile_reader
from zhike_profile.storage.schema import profile, profile_source_record
from zhike_runtime.db import Database
from zhike_runtime.errors import InvalidArgument, NotFound
from zhike_runtime.migrations import apply_migrations

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=1)
T2 = T0 + dt.timedelta(minutes=2)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await apply_migrations(db, DEFINITION.migrations)
    try:
        yield db
    finally:
        await db.dispose()


def party() -> str:
    return str(uuid.uuid4())


async def party_created(database: Database, party_id: str, at: dt.datetime) -> None:
    async with database.session() as session, session.begin():
        await service.apply_party_created(SqlProfileRepository(session), party_id, at)


async def source_record_linked(
    database: Database, party_id: str, system: str, record_id: str, at: dt.datetime
) -> None:
    async with database.session() as session, session.begin():
        await service.apply_source_record_linked(
            SqlProfileRepository(session), party_id, LinkedSourceRecord(system, record_id, at)
        )


async def get(database: Database, party_id: str) -> Profile:
    return await ProfileQueries(profile_reader(database)).get_profile(party_id)


async def count(database: Database, table: sa.Table) -> int:
    async with database.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_party_created_makes_an_empty_profile(database: Database) -> None:
    party_id = party()

    await party_created(database, party_id, T0)

    found = await get(database, party_id)
    assert found == Profile(party_id, (), created_at=T0, updated_at=T0)


async def test_party_created_twice_changes_nothing(database: Database) -> None:
    party_id = party()
    await party_created(database, party_id, T0)

    await party_created(database, party_id, T1)

    found = await get(database, party_id)
    assert (found.created_at, found.updated_at) == (T0, T0)
    assert await count(database, profile) == 1


async def test_linked_records_are_listed_in_link_order(database: Database) -> None:
    party_id = party()
    await party_created(database, party_id, T0)

    await source_record_linked(database, party_id, "cards", "C-77", T2)
    await source_record_linked(database, party_id, "core-banking", "CIF-1", T1)

    found = await get(database, party_id)
    assert found.source_records == (
        LinkedSourceRecord("core-banking", "CIF-1", T1),
        LinkedSourceRecord("cards", "C-77", T2),
    )
    assert found.created_at == T0
    assert all(r.linked_at.tzinfo is not None for r in found.source_records)


async def test_source_record_linked_before_party_created_yields_one_profile(
    database: Database,
) -> None:
    party_id = party()

    await source_record_linked(database, party_id, "core-banking", "CIF-1", T1)
    await party_created(database, party_id, T0)

    found = await get(database, party_id)
    assert found.party_id == party_id
    assert found.source_records == (LinkedSourceRecord("core-banking", "CIF-1", T1),)
    assert await count(database, profile) == 1
    assert await count(database, profile_source_record) == 1


async def test_the_same_link_applied_twice_keeps_one_record(database: Database) -> None:
    party_id = party()

    await source_record_linked(database, party_id, "crm", "1", T1)
    await source_record_linked(database, party_id, "crm", "1", T1)

    assert (await get(database, party_id)).source_records == (LinkedSourceRecord("crm", "1", T1),)
    assert await count(database, profile_source_record) == 1


async def test_linking_a_record_to_another_party_moves_it(database: Database) -> None:
    first, second = party(), party()
    await party_created(database, first, T0)
    await party_created(database, second, T0)
    await source_record_linked(database, first, "crm", "1", T1)
    await source_record_linked(database, first, "crm", "2", T1)

    await source_record_linked(database, second, "crm", "1", T2)

    assert (await get(database, first)).source_records == (LinkedSourceRecord("crm", "2", T1),)
    assert (await get(database, second)).source_records == (LinkedSourceRecord("crm", "1", T2),)
    assert await count(database, profile_source_record) == 2


async def test_a_failed_transaction_leaves_no_profile(database: Database) -> None:
    party_id = party()

    async def link_then_fail() -> None:
        async with database.session() as session, session.begin():
            await service.apply_source_record_linked(
                SqlProfileRepository(session), party_id, LinkedSourceRecord("crm", "1", T1)
            )
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await link_then_fail()

    assert await count(database, profile) == 0
    assert await count(database, profile_source_record) == 0


async def test_get_profile_for_unknown_party_is_not_found(database: Database) -> None:
    unknown = party()

    with pytest.raises(NotFound) as caught:
        await get(database, unknown)

    assert (caught.value.resource, caught.value.resource_id) == ("profile", unknown)


@pytest.mark.parametrize("party_id", ["", "not-a-uuid", "a.b.>"])
async def test_get_profile_with_malformed_id_names_party_id(
    database: Database, party_id: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await get(database, party_id)

    assert [v.field for v in caught.value.violations] == ["party_id"]
