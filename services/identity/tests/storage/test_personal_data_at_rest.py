"""Personal data at rest (RELIABILITY S7): what the identity store's files hold, on SQLite and
PostgreSQL; the migration of a plaintext store; key rotation while the service links."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from zhike_identity.app import DEFINITION
from zhike_identity.domain.matching.resolver import resolve
from zhike_identity.domain.model import IdType, SourceRecordInput
from zhike_identity.domain.queries import PartyQuery
from zhike_identity.domain.resident_id import check_character
from zhike_identity.storage.bulk import index_keys, service_record
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.schema import ENCRYPTED_COLUMNS, blocking_key, party, source_record
from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database
from zhike_runtime.key_rotation import rotate_keys
from zhike_runtime.migrations import (
    SERVICE_VERSION_TABLE,
    apply_migrations,
)
from zhike_runtime.testing.migrations import service_store_at
from zhike_runtime.testing.processes import PostgresCluster
from zhike_runtime.testing.services import (
    TEST_DATA_KEY_ID,
    TEST_SECOND_DATA_KEY_ID,
    field_key_environment,
    fixed_field_keys,
)

from ..use_cases import UseCases, use_cases
from .test_bulk import VERSION, generated

KEYS = fixed_field_keys(TEST_DATA_KEY_ID)
ROTATED = fixed_field_keys(TEST_SECOND_DATA_KEY_ID)


def resident_id(body: str) -> str:
    return body + check_character(body)


@dataclasses.dataclass(frozen=True)
class Customer:
    name: str
    resident_id: str
    phone: str  # national digits, as the branch typed them
    email: str

    @property
    def e164(self) -> str:
        return "+86" + self.phone

    def plain_forms(self) -> list[str]:
        """Every form in which the old store held this customer's identifiers: the ID number
        and its blocking halves, the phone as typed and in E.164."""
        half = len(self.resident_id) // 2
        return [
            self.resident_id,
            self.resident_id[:half],
            self.resident_id[half:],
            self.phone,
            self.e164,
        ]


CUSTOMERS = [
    Customer("刘建军", resident_id("11010519491231002"), "13812345678", "liu.jianjun@163.com"),
    Customer("王秀英", resident_id("31011519800101123"), "13998765432", "wang.xy@163.com"),
    Customer("陈志强", resident_id("44030519900215456"), "15011112222", "chen.zq@163.com"),
    Customer("张丽", resident_id("51010719751120789"), "18600001111", "zhang.li@163.com"),
]


def records_of(customer: Customer, number: int) -> list[SourceRecordInput]:
    """The customer as two systems hold her: with all identifiers, and with the ID alone."""
    return [
        SourceRecordInput(
            "core_deposits",
            f"D-{number}",
            full_name=customer.name,
            id_type=1,
            id_number=customer.resident_id,
            phone=customer.phone,
            email=customer.email,
        ),
        SourceRecordInput(
            "cards",
            f"C-{number}",
            full_name=customer.name,
            id_type=1,
            id_number=customer.resident_id,
        ),
    ]


def identity_service(database: Database, keys: FieldKeys) -> UseCases:
    return use_cases(database, RecordProtection(keys))


async def link_customers(service: UseCases) -> dict[str, str]:
    """Links every customer's records; returns each customer's party by resident ID."""
    parties: dict[str, str] = {}
    for number, customer in enumerate(CUSTOMERS, start=1):
        outcomes = [
            await service.linking.link_source_record(r) for r in records_of(customer, number)
        ]
        assert len({o.party_id for o in outcomes}) == 1
        parties[customer.resident_id] = outcomes[0].party_id
    return parties


async def assert_found(service: UseCases, parties: dict[str, str]) -> None:
    for customer in CUSTOMERS:
        party_id = parties[customer.resident_id]
        assert await service.queries.find_parties(PartyQuery(id_number=customer.resident_id)) == [
            party_id
        ]
        assert await service.queries.find_parties(PartyQuery(phone=customer.phone)) == [party_id]
        assert await service.queries.find_parties(PartyQuery(phone=customer.e164)) == [party_id]
        assert await service.queries.find_parties(PartyQuery(email=customer.email)) == [party_id]
        view = await service.queries.get_party(party_id)
        assert {r.record.id_number for r in view.records} == {customer.resident_id}
        assert customer.phone in {r.record.phone for r in view.records}


async def store_files(database_url: str, request: pytest.FixtureRequest) -> list[Path]:
    """The files that hold the store's bytes: the SQLite file and its write-ahead log, or every
    file of the PostgreSQL database's directory after a checkpoint has written them out."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        main = Path(url.database or "")
        return [p for p in (main, main.with_name(main.name + "-wal")) if p.exists()]
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    database = Database(database_url)
    try:
        async with database.engine.connect() as connection:
            await connection.execute(sa.text("CHECKPOINT"))
            oid = await connection.scalar(
                sa.text("SELECT oid FROM pg_database WHERE datname = current_database()")
            )
    finally:
        await database.dispose()
    return [p for p in (cluster.data / "base" / str(oid)).iterdir() if p.is_file()]


def occurrences(files: list[Path], texts: list[str]) -> dict[str, int]:
    contents = [f.read_bytes() for f in files]
    return {t: sum(c.count(t.encode()) for c in contents) for t in texts}


async def test_the_store_files_hold_no_resident_id_or_phone_and_look_ups_still_find_the_party(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    database = Database(database_url)
    await apply_migrations(database, DEFINITION.migrations, KEYS)
    service = identity_service(database, KEYS)
    try:
        parties = await link_customers(service)
        await assert_found(service, parties)
    finally:
        await database.dispose()

    files = await store_files(database_url, request)

    plain = [form for customer in CUSTOMERS for form in customer.plain_forms()]
    assert occurrences(files, plain) == dict.fromkeys(plain, 0)
    # The scan sees the store: what is not sealed (the names, the record ids) is there.
    assert all(n > 0 for n in occurrences(files, [c.name for c in CUSTOMERS]).values())
    assert occurrences(files, ["core_deposits"])["core_deposits"] > 0


async def test_stored_values_are_sealed_tokens_and_index_keys_keep_their_prefix(
    database_url: str,
) -> None:
    database = Database(database_url)
    await apply_migrations(database, DEFINITION.migrations, KEYS)
    try:
        await link_customers(identity_service(database, KEYS))
        async with database.session() as session:
            rows = (await session.execute(sa.select(source_record))).all()
            keys = [k for (k,) in await session.execute(sa.select(blocking_key.c.key))]
    finally:
        await database.dispose()

    for row in rows:
        assert row.id_number.startswith(f"v1.{TEST_DATA_KEY_ID}.")
        assert row.email == "" or row.email.startswith(f"v1.{TEST_DATA_KEY_ID}.")
    assert {k[:3] for k in keys} >= {"id:", "ih:", "it:", "ph:", "em:", "nm:"}
    assert all(len(k) == 3 + 24 for k in keys)


async def old_plaintext_store(database: Database) -> tuple[dict[tuple[str, str], str], int]:
    """A store as the release before sealing wrote it (schema identity_0002, plain values and
    plain index keys); returns each record's party and how many non-empty values it holds."""
    assert DEFINITION.migrations is not None
    async with database.engine.begin() as connection:
        await connection.run_sync(service_store_at, DEFINITION.migrations, "identity_0002")
    raw = generated()[:60]
    resolution = resolve(raw)
    today = dt.date.today()
    now = dt.datetime.now(dt.UTC)
    stored = [service_record(r, today).record for r in raw]
    party_of = {
        (r.key.source_system, r.key.source_record_id): p
        for r, p in zip(stored, resolution.party_ids, strict=True)
    }
    values = sum(bool(v) for r in stored for v in (r.id_number, r.phone, r.email))
    async with database.engine.begin() as connection:
        await connection.execute(
            sa.insert(party), [{"party_id": p, "created_at": now} for p in set(party_of.values())]
        )
        await connection.execute(
            sa.insert(source_record),
            [
                {
                    "source_system": r.key.source_system,
                    "source_record_id": r.key.source_record_id,
                    "party_id": party_of[(r.key.source_system, r.key.source_record_id)],
                    "full_name": r.full_name,
                    "id_type": int(r.id_type) if r.id_type else None,
                    "id_number": r.id_number,
                    "phone": r.phone,
                    "email": r.email,
                    "birth_date": r.birth_date,
                    "gender": int(r.gender) if r.gender else None,
                    "address": r.address,
                    "created_at": now,
                    "updated_at": now,
                    "model_version": VERSION,
                }
                for r in stored
            ],
        )
        await connection.execute(
            sa.insert(blocking_key),
            [
                {
                    "key": k,
                    "source_system": r.key.source_system,
                    "source_record_id": r.key.source_record_id,
                }
                for r in stored
                for k in index_keys(r)
            ],
        )
    return party_of, values


async def test_the_migration_seals_a_plaintext_store_and_blinds_its_index(
    database_url: str,
) -> None:
    database = Database(database_url)
    try:
        party_of, values = await old_plaintext_store(database)
        raw = generated()[:60]
        today = dt.date.today()
        plain = {(r.source, r.source_id): service_record(r, today).record for r in raw}

        await apply_migrations(database, DEFINITION.migrations, KEYS)

        protection = RecordProtection(KEYS)
        async with database.session() as session:
            rows = (await session.execute(sa.select(source_record))).all()
            index = {
                (r.key, r.source_system, r.source_record_id)
                for r in await session.execute(sa.select(blocking_key))
            }
        sealed = [v for row in rows for v in (row.id_number, row.phone, row.email) if v]
        assert len(sealed) == values
        assert all(v.startswith(f"v1.{TEST_DATA_KEY_ID}.") for v in sealed)
        for row in rows:
            record = plain[(row.source_system, row.source_record_id)]
            assert protection.open(row) == (record.id_number, record.phone, record.email)
        assert index == {
            (k, r.key.source_system, r.key.source_record_id)
            for r in plain.values()
            for k in protection.index_keys(index_keys(r))
        }
        # The service finds the stored persons again: by ID number, and as a new record's match.
        service = identity_service(database, KEYS)
        known = next(r for r in plain.values() if r.id_type is IdType.RESIDENT_ID)
        party_id = party_of[(known.key.source_system, known.key.source_record_id)]
        assert await service.queries.find_parties(PartyQuery(id_number=known.id_number)) == [
            party_id
        ]
        outcome = await service.linking.link_source_record(
            SourceRecordInput(
                "branch_wealth",
                "W-1",
                full_name=known.full_name,
                id_type=1,
                id_number=known.id_number,
            )
        )
        assert outcome.party_id == party_id
    finally:
        await database.dispose()


async def test_the_migration_of_a_plaintext_store_without_keys_stops_and_changes_nothing(
    database_url: str,
) -> None:
    database = Database(database_url)
    try:
        await old_plaintext_store(database)

        with pytest.raises(RuntimeError, match="ZHIKE_DATA_KEYS"):
            await apply_migrations(database, DEFINITION.migrations)

        async with database.session() as session:
            version = await session.scalar(
                sa.text(f"SELECT version_num FROM {SERVICE_VERSION_TABLE}")
            )
            plain_ids = await session.scalar(
                sa.select(sa.func.count())
                .select_from(source_record)
                .where(
                    source_record.c.id_number != "", ~source_record.c.id_number.startswith("v1.")
                )
            )
        assert version == "identity_0002"
        assert plain_ids
    finally:
        await database.dispose()


async def sealed_values(database: Database) -> list[str]:
    async with database.session() as session:
        rows = await session.execute(
            sa.select(source_record.c.id_number, source_record.c.phone, source_record.c.email)
        )
        return [v for row in rows for v in row if v]


async def test_rotation_reseals_every_value_while_the_service_links(database_url: str) -> None:
    database = Database(database_url)
    await apply_migrations(database, DEFINITION.migrations, KEYS)
    try:
        parties = await link_customers(identity_service(database, KEYS))
        before = await sealed_values(database)
        assert all(v.startswith(f"v1.{TEST_DATA_KEY_ID}.") for v in before)
        # The new key rolled out to the service first; it keeps linking during the rotation.
        service = identity_service(database, ROTATED)

        async def keep_linking() -> None:
            for n in range(20):
                await service.linking.link_source_record(
                    SourceRecordInput(
                        "mobile_app", f"M-{n}", full_name="赵敏", phone=f"1370000{n:04d}"
                    )
                )

        report, _ = await asyncio.gather(
            rotate_keys(database, ROTATED.ring, ENCRYPTED_COLUMNS, batch_size=3), keep_linking()
        )

        assert report.values == len(before)
        assert report.remaining == 0
        after = await sealed_values(database)
        assert len(after) == len(before) + 20
        assert all(v.startswith(f"v1.{TEST_SECOND_DATA_KEY_ID}.") for v in after)
        # The old key can now leave the ring: everything opens without it.
        only_new = fixed_field_keys(TEST_SECOND_DATA_KEY_ID, key_ids=[TEST_SECOND_DATA_KEY_ID])
        await assert_found(identity_service(database, only_new), parties)
        # Nothing left to do: a second run re-seals nothing.
        again = await rotate_keys(database, ROTATED.ring, ENCRYPTED_COLUMNS)
        assert (again.values, again.remaining) == (0, 0)
    finally:
        await database.dispose()


def test_rotate_keys_command_reports_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}"

    async def linked() -> None:
        database = Database(url)
        await apply_migrations(database, DEFINITION.migrations, KEYS)
        try:
            await link_customers(identity_service(database, KEYS))
        finally:
            await database.dispose()

    asyncio.run(linked())
    zhike = Path(sys.executable).parent / "zhike"
    environment = os.environ | field_key_environment()
    environment["ZHIKE_DATA_KEY_ID"] = TEST_SECOND_DATA_KEY_ID

    done = subprocess.run(
        [str(zhike), "rotate-keys", "--service", "identity", "--store", url, "--batch-size", "2"],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )

    assert done.returncode == 0, done.stderr
    # Per customer: ID number, phone and e-mail of one record, the ID number of the other.
    assert f"re-sealed {4 * len(CUSTOMERS)} values" in done.stderr
    assert "0 still under another key" in done.stderr
    unknown = subprocess.run(
        [str(zhike), "rotate-keys", "--service", "nobody", "--store", url],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert unknown.returncode == 2
    assert "declares no encrypted columns" in unknown.stderr
