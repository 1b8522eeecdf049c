"""FindParties over values that many records share (RELIABILITY S11), on SQLite and PostgreSQL.

A call-centre search reads a bounded number of records however large the store: by name and birth
date it opens only the records of that name born that day, never every 王伟; it resolves the
parties of what it found in one statement; and a criterion held by more records than a search
reads is refused (FAILED_PRECONDITION) rather than answered in part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.resolver import BLOCK_LIMIT, Resolution
from zhike_identity.domain.queries import PartyQuery
from zhike_identity.domain.resident_id import check_character
from zhike_identity.storage.bulk import write_store
from zhike_identity.storage.protection import RecordProtection
from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database
from zhike_runtime.errors import FailedPrecondition
from zhike_runtime.ids import new_id
from zhike_runtime.testing.services import fixed_field_keys

from ..use_cases import UseCases, use_cases

KEYS = fixed_field_keys()
BORN = dt.date(1985, 3, 2)


class CountingProtection(RecordProtection):
    """The store's own protection, counting the records whose personal data it opens: a record
    read from `source_record` is opened once, so this counts the records a call read."""

    def __init__(self, keys: FieldKeys) -> None:
        super().__init__(keys)
        self.opened = 0

    def open_values(
        self, source_system: str, source_record_id: str, id_number: str, phone: str, email: str
    ) -> tuple[str, str, str]:
        self.opened += 1
        return super().open_values(source_system, source_record_id, id_number, phone, email)


@dataclasses.dataclass
class Store:
    url: str
    database: Database
    protection: CountingProtection
    service: UseCases

    async def load(self, records: list[RawRecord]) -> list[str]:
        """Stores the records as the bulk load does, each in a party of its own (the parties)."""
        parties = [new_id() for _ in records]
        await write_store(
            self.url, records, Resolution(parties, [], []), keys=KEYS, model_version="t", workers=1
        )
        return parties

    async def find(self, query: PartyQuery) -> list[str]:
        self.protection.opened = 0
        return await self.service.queries.find_parties(query)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    database = Database(database_url)
    protection = CountingProtection(KEYS)
    try:
        yield Store(database_url, database, protection, use_cases(database, protection))
    finally:
        await database.dispose()


@contextlib.contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements the database is sent while the block runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(str(args[2]))

    sa.event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(database.engine.sync_engine, "before_cursor_execute", record)


def wang_wei(n: int, born: dt.date, **values: str) -> RawRecord:
    """One of many customers called 王伟, each with a phone of his own."""
    return RawRecord(
        "core",
        f"W-{n:05d}",
        full_name="王伟",
        birth_date=born.isoformat(),
        phone=f"139{10_000_000 + n:08d}",
        **values,
    )


def resident_id(born: dt.date, serial: str) -> str:
    body = f"110105{born:%Y%m%d}{serial}"
    return body + check_character(body)


async def test_a_search_by_a_common_name_opens_only_the_records_born_that_day(
    store: Store,
) -> None:
    # More customers called 王伟 than a search may read, none born on the day asked about…
    others = [wang_wei(n, dt.date(1960, 1, 1) + dt.timedelta(days=3 * n)) for n in range(150)]
    # …and the three records of that name born that day, however their names and dates were
    # written: the characters, Latin letters surname first, a birth date only in the ID number.
    born_that_day = [
        RawRecord("cards", "C-1", full_name="王伟", birth_date=BORN.isoformat()),
        RawRecord(
            "crm", "R-1", full_name="WANG WEI", birth_date="1985年3月2日", phone="13700000001"
        ),
        RawRecord(
            "loans",
            "L-1",
            full_name="王 伟",
            id_type="RESIDENT_ID",
            id_number=resident_id(BORN, "001"),
        ),
    ]
    # Born that day with the same initial, another name: shares the birth-date key, not the name.
    stranger = RawRecord("cards", "C-2", full_name="吴敏", birth_date=BORN.isoformat())
    parties = await store.load([*others, *born_that_day, stranger])

    found = await store.find(PartyQuery(full_name="王伟", birth_date=BORN))

    assert found == parties[len(others) : len(others) + 3]
    assert store.protection.opened == 3
    # A day on which nobody of that name was born opens nothing.
    assert await store.find(PartyQuery(full_name="王伟", birth_date=dt.date(1985, 3, 3))) == []
    assert store.protection.opened == 0


async def test_a_search_sends_the_same_statements_however_many_parties_it_finds(
    store: Store,
) -> None:
    many = [wang_wei(n, BORN) for n in range(20)]
    one = RawRecord("cards", "C-1", full_name="李娜", birth_date="1990-07-15")
    parties = await store.load([*many, one])

    with statements(store.database) as for_twenty:
        found_twenty = await store.find(PartyQuery(full_name="王伟", birth_date=BORN))
    with statements(store.database) as for_one:
        found_one = await store.find(PartyQuery(full_name="李娜", birth_date=dt.date(1990, 7, 15)))

    assert sorted(found_twenty) == sorted(parties[:20])
    assert found_one == [parties[20]]
    # The records, then their parties: not one statement more for each party found.
    assert len(for_twenty) == len(for_one) <= 3


def shared_name(n: int, broad: bool) -> RawRecord:
    return wang_wei(n if broad else 1000 + n, BORN if broad else BORN + dt.timedelta(days=1))


def shared_phone(n: int, broad: bool) -> RawRecord:
    name = f"客户{chr(0x4E00 + n)}"
    return RawRecord("crm", f"P-{broad:d}-{n:05d}", full_name=name, phone=PHONES[broad])


def shared_email(n: int, broad: bool) -> RawRecord:
    name = f"客户{chr(0x4E00 + n)}"
    return RawRecord("crm", f"E-{broad:d}-{n:05d}", full_name=name, email=EMAILS[broad])


PHONES = {True: "13912345678", False: "13887654321"}  # a branch's number, a family's
EMAILS = {True: "branch.office@bank.cn", False: "zhang.family@163.com"}


@pytest.mark.parametrize(
    ("criterion", "broad", "narrower", "shared"),
    [
        (
            "name_and_birth_date",
            PartyQuery(full_name="王伟", birth_date=BORN),
            PartyQuery(full_name="王伟", birth_date=BORN + dt.timedelta(days=1)),
            shared_name,
        ),
        (
            "phone",
            PartyQuery(phone="+86 139 1234 5678"),
            PartyQuery(phone="138-8765-4321"),
            shared_phone,
        ),
        (
            "email",
            PartyQuery(email="Branch.Office@bank.cn"),
            PartyQuery(email="Zhang.Family@163.com"),
            shared_email,
        ),
    ],
)
async def test_a_criterion_held_by_more_records_than_a_search_reads_is_refused(
    store: Store,
    criterion: str,
    broad: PartyQuery,
    narrower: PartyQuery,
    shared: Callable[[int, bool], RawRecord],
) -> None:
    # One record more than a search reads holds the broad value; exactly as many the other.
    loaded = await store.load(
        [shared(n, True) for n in range(BLOCK_LIMIT + 1)]
        + [shared(n, False) for n in range(BLOCK_LIMIT)]
    )

    with pytest.raises(FailedPrecondition) as refused:
        await store.find(broad)

    # Refused whole, never a silent part of the list: naming the criterion, not its value.
    assert refused.value.subject == criterion
    assert "too many" in refused.value.reason
    assert store.protection.opened <= BLOCK_LIMIT + 1
    for value in ("王伟", "wangwei", "1234", "branch", "1985"):
        assert value not in str(refused.value)
    # The other value, held by as many records as a search reads, is answered in full.
    assert sorted(await store.find(narrower)) == sorted(loaded[BLOCK_LIMIT + 1 :])
    assert store.protection.opened == BLOCK_LIMIT
