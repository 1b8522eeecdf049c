"""Identity use cases over real storage: the same bodies run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from zhike.identity.v1 import events_pb2
from zhike_identity.app import DEFINITION
from zhike_identity.domain.matching.blocking import blocking_keys
from zhike_identity.domain.matching.features import RawRecord, extract_features
from zhike_identity.domain.matching.model import default_model
from zhike_identity.domain.model import LinkOutcome, SourceRecordInput, SourceRecordKey
from zhike_identity.domain.placement import raw_record
from zhike_identity.domain.queries import PartyQuery
from zhike_identity.domain.resident_id import check_character
from zhike_identity.domain.validation import validate_source_record
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.repository import SqlIdentityUnitOfWork
from zhike_identity.storage.schema import party, source_record
from zhike_identity.transport import codec
from zhike_runtime.db import Database
from zhike_runtime.errors import InvalidArgument, NotFound
from zhike_runtime.events import headers as h
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.services import fixed_field_keys

from ..use_cases import UseCases, use_cases

NOW = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.UTC)
RESIDENT_ID = "11010519491231002X"

PARTY_CREATED = events_pb2.PartyCreated.DESCRIPTOR.full_name
SOURCE_RECORD_LINKED = events_pb2.SourceRecordLinked.DESCRIPTOR.full_name
GOLDEN_RECORD_CHANGED = events_pb2.GoldenRecordChanged.DESCRIPTOR.full_name

PROTECTION = RecordProtection(fixed_field_keys())


@dataclasses.dataclass
class Identity:
    service: UseCases
    database: Database
    commits_with_events: list[int]


@pytest.fixture
async def identity(database_url: str) -> AsyncIterator[Identity]:
    database = Database(database_url)
    await apply_migrations(database, DEFINITION.migrations)
    notified: list[int] = []
    # Built exactly as app.wire builds it, with a counter in place of the relay's notify.
    service = use_cases(
        database, PROTECTION, clock=lambda: NOW, on_commit=lambda: notified.append(1)
    )
    try:
        yield Identity(service, database, notified)
    finally:
        await database.dispose()


def record(source_system: str, source_record_id: str, **values: Any) -> SourceRecordInput:
    return SourceRecordInput(source_system, source_record_id, **values)


def with_resident_id(source_system: str, source_record_id: str, **values: Any) -> SourceRecordInput:
    return record(source_system, source_record_id, id_type=1, id_number=RESIDENT_ID, **values)


async def outbox(database: Database) -> list[dict[str, Any]]:
    async with database.session() as session:
        rows = await session.execute(sa.select(outbox_event).order_by(outbox_event.c.position))
        return [dict(row._mapping) for row in rows]


async def count(database: Database, table: sa.Table) -> int:
    async with database.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def stored_record(database: Database, key: SourceRecordKey) -> dict[str, Any]:
    """The stored row, its sealed columns opened."""
    async with database.session() as session:
        row = (
            await session.execute(
                sa.select(source_record).where(
                    source_record.c.source_system == key.source_system,
                    source_record.c.source_record_id == key.source_record_id,
                )
            )
        ).one()
        id_number, phone, email = PROTECTION.open(row)
        return dict(row._mapping) | {"id_number": id_number, "phone": phone, "email": email}


async def test_new_record_creates_a_party_and_stages_both_events(identity: Identity) -> None:
    outcome = await identity.service.linking.link_source_record(
        with_resident_id("core-banking", "CIF-1", full_name="王小明")
    )

    assert outcome.party_created is True
    assert str(uuid.UUID(outcome.party_id)) == outcome.party_id
    rows = await outbox(identity.database)
    assert [(r["event_type"], r["subject"]) for r in rows] == [
        (PARTY_CREATED, codec.PARTY_CREATED_SUBJECT),
        (SOURCE_RECORD_LINKED, codec.SOURCE_RECORD_LINKED_SUBJECT),
        (GOLDEN_RECORD_CHANGED, codec.GOLDEN_RECORD_CHANGED_SUBJECT),
    ]
    created = events_pb2.PartyCreated.FromString(rows[0]["payload"])
    linked = events_pb2.SourceRecordLinked.FromString(rows[1]["payload"])
    assert created.party_id == outcome.party_id
    assert created.create_time.ToDatetime(tzinfo=dt.UTC) == NOW
    assert linked.party_id == outcome.party_id
    assert (linked.source_record.source_system, linked.source_record.source_record_id) == (
        "core-banking",
        "CIF-1",
    )
    for row in rows:
        assert row["published_at"] is None
        assert row["headers"][h.MSG_ID] == row["event_id"]
        assert row["headers"][h.EVENT_ID] == row["event_id"]
        assert row["headers"][h.EVENT_TYPE] == row["event_type"]
        assert row["headers"][h.CONTENT_TYPE] == h.PROTOBUF
    assert rows[0]["event_id"] != rows[1]["event_id"]
    assert identity.commits_with_events == [1]
    assert await count(identity.database, party) == 1


async def test_link_with_same_resident_id_joins_existing_party(identity: Identity) -> None:
    first = await identity.service.linking.link_source_record(
        with_resident_id("core-banking", "CIF-1")
    )
    # The same number written the way a branch system sends it: spaces and a lower-case x.
    second = await identity.service.linking.link_source_record(
        record("cards", "C-77", id_type=1, id_number="110105 19491231 002x")
    )

    assert second.party_id == first.party_id
    assert second.party_created is False
    rows = await outbox(identity.database)
    assert [r["event_type"] for r in rows] == [
        PARTY_CREATED,
        SOURCE_RECORD_LINKED,
        GOLDEN_RECORD_CHANGED,
        SOURCE_RECORD_LINKED,
        GOLDEN_RECORD_CHANGED,
    ]
    linked = events_pb2.SourceRecordLinked.FromString(rows[3]["payload"])
    assert linked.party_id == first.party_id
    assert linked.source_record.source_system == "cards"
    assert await count(identity.database, party) == 1


async def test_same_source_key_again_updates_values_and_keeps_party(identity: Identity) -> None:
    first = await identity.service.linking.link_source_record(
        with_resident_id("core-banking", "CIF-1", full_name="王小明", email="old@example.cn")
    )
    events_before = len(await outbox(identity.database))

    again = await identity.service.linking.link_source_record(
        with_resident_id("core-banking", "CIF-1", full_name="王晓明", email="NEW@example.cn")
    )

    assert again.party_id == first.party_id
    assert again.party_created is False
    # Re-resolved in place: no link or move, only the golden record's new name.
    new_events = (await outbox(identity.database))[events_before:]
    assert [r["event_type"] for r in new_events] == [GOLDEN_RECORD_CHANGED]
    stored = await stored_record(identity.database, SourceRecordKey("core-banking", "CIF-1"))
    assert stored["full_name"] == "王晓明"
    assert stored["email"] == "new@example.cn"
    assert stored["party_id"] == first.party_id
    assert await count(identity.database, source_record) == 1


class Ticking:
    """A clock a minute further on at every reading: a write stamps a time no earlier one did."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(minutes=1)
        return self.now


async def golden_events(database: Database) -> list[events_pb2.GoldenRecordChanged]:
    return [
        events_pb2.GoldenRecordChanged.FromString(r["payload"])
        for r in await outbox(database)
        if r["event_type"] == GOLDEN_RECORD_CHANGED
    ]


async def test_the_same_values_sent_again_write_nothing_and_publish_nothing(
    identity: Identity,
) -> None:
    linking = use_cases(identity.database, PROTECTION, clock=Ticking()).linking
    first = with_resident_id("core-banking", "CIF-1", full_name="王小明", phone="13800138000")
    party_id = (await linking.link_source_record(first)).party_id
    await linking.link_source_record(
        with_resident_id("cards", "C-77", full_name="王小明", email="wang@example.cn")
    )
    events_before = await outbox(identity.database)
    stored_before = await stored_record(identity.database, SourceRecordKey("core-banking", "CIF-1"))

    again = await linking.link_source_record(first)

    assert again == LinkOutcome(party_id, party_created=False, merged_party_ids=())
    assert await outbox(identity.database) == events_before
    stored_after = await stored_record(identity.database, SourceRecordKey("core-banking", "CIF-1"))
    assert stored_after == stored_before  # not even updated_at moved


async def test_a_changed_value_the_golden_record_picks_is_published_once(
    identity: Identity,
) -> None:
    linking = use_cases(identity.database, PROTECTION, clock=Ticking()).linking
    first = with_resident_id("core-banking", "CIF-1", full_name="王小明", phone="13800138000")
    await linking.link_source_record(first)
    await linking.link_source_record(with_resident_id("cards", "C-77", full_name="王小明"))
    published = len(await golden_events(identity.database))

    await linking.link_source_record(dataclasses.replace(first, phone="13900139000"))

    golden = await golden_events(identity.database)
    assert len(golden) == published + 1
    assert golden[-1].golden_record.full_name.value == "王小明"
    stored = await stored_record(identity.database, SourceRecordKey("core-banking", "CIF-1"))
    assert stored["phone"] == "13900139000"


async def test_a_shared_name_alone_does_not_make_one_person(identity: Identity) -> None:
    first = await identity.service.linking.link_source_record(record("crm", "1", full_name="李雷"))
    second = await identity.service.linking.link_source_record(record("crm", "2", full_name="李雷"))

    assert first.party_id != second.party_id
    assert first.party_created
    assert second.party_created
    assert await count(identity.database, party) == 2


async def test_the_same_valid_passport_number_links_two_records(identity: Identity) -> None:
    third = await identity.service.linking.link_source_record(
        record("cards", "P-1", id_type=2, id_number="E12345678")
    )
    fourth = await identity.service.linking.link_source_record(
        record("loans", "P-2", id_type=2, id_number="E12345678")
    )

    assert fourth.party_id == third.party_id


async def test_get_party_lists_its_source_records(identity: Identity) -> None:
    first = await identity.service.linking.link_source_record(
        with_resident_id("core-banking", "CIF-1")
    )
    await identity.service.linking.link_source_record(with_resident_id("cards", "C-77"))
    await identity.service.linking.link_source_record(record("crm", "other-person"))

    found = await identity.service.queries.get_party(first.party_id)

    assert found.party_id == first.party_id
    assert {r.key for r in found.records} == {
        SourceRecordKey("core-banking", "CIF-1"),
        SourceRecordKey("cards", "C-77"),
    }
    assert len(found.records) == 2
    joined = next(r for r in found.records if r.key.source_system == "cards")
    assert joined.evidence.matched == SourceRecordKey("core-banking", "CIF-1")
    assert joined.evidence.weight is not None
    assert joined.evidence.model_version == default_model().version


async def test_get_party_with_unknown_uuid_is_not_found(identity: Identity) -> None:
    unknown = str(uuid.uuid4())

    with pytest.raises(NotFound) as caught:
        await identity.service.queries.get_party(unknown)

    assert (caught.value.resource, caught.value.resource_id) == ("party", unknown)


@pytest.mark.parametrize(
    "party_id", ["", "not-a-uuid", "a.b.>", "3698F1E8-2CFF-4CB0-ACF1-C72C6DB1C20B"]
)
async def test_get_party_with_non_uuid_id_is_invalid_argument(
    identity: Identity, party_id: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await identity.service.queries.get_party(party_id)

    assert [v.field for v in caught.value.violations] == ["party_id"]


async def test_concurrent_links_with_same_resident_id_end_in_one_party(
    identity: Identity,
) -> None:
    outcomes = await asyncio.gather(
        *(
            identity.service.linking.link_source_record(with_resident_id(f"source-{i}", f"R-{i}"))
            for i in range(10)
        )
    )

    assert len({o.party_id for o in outcomes}) == 1
    assert sum(o.party_created for o in outcomes) == 1
    assert await count(identity.database, party) == 1
    assert await count(identity.database, source_record) == 10
    found = await identity.service.queries.get_party(outcomes[0].party_id)
    assert len(found.records) == 10
    # The losers' PartyCreated rolled back with their party: one creation, ten links.
    types = [r["event_type"] for r in await outbox(identity.database)]
    assert types.count(PARTY_CREATED) == 1
    assert types.count(SOURCE_RECORD_LINKED) == 10


async def test_concurrent_links_of_the_same_source_key_store_it_once(identity: Identity) -> None:
    outcomes = await asyncio.gather(
        *(
            identity.service.linking.link_source_record(record("crm", "dup", full_name=f"name {i}"))
            for i in range(5)
        )
    )

    assert len({o.party_id for o in outcomes}) == 1
    assert await count(identity.database, party) == 1
    assert await count(identity.database, source_record) == 1
    types = [r["event_type"] for r in await outbox(identity.database)]
    assert types.count(PARTY_CREATED) == 1
    assert types.count(SOURCE_RECORD_LINKED) == 1


async def test_invalid_link_stores_nothing_and_stages_no_event(identity: Identity) -> None:
    with pytest.raises(InvalidArgument):
        await identity.service.linking.link_source_record(
            record("core.banking", "", full_name="王\x00", id_type=99, email="nobody")
        )
    with pytest.raises(InvalidArgument):
        await identity.service.linking.link_source_record(
            record("crm", "1", id_type=1, id_number="110105194912310021")
        )

    for table in (party, source_record, outbox_event):
        assert await count(identity.database, table) == 0, table.name
    assert identity.commits_with_events == []


async def test_resident_id_birth_date_and_normalised_values_are_stored(identity: Identity) -> None:
    await identity.service.linking.link_source_record(
        record(
            "crm",
            "7",
            full_name=" Zoe\u0301 ",
            id_type=1,
            id_number="110105491231002",  # legacy 15-digit form
            birth_date=(1949, 12, 31),
            gender=2,
        )
    )

    stored = await stored_record(identity.database, SourceRecordKey("crm", "7"))
    assert stored["full_name"] == "Zoé"
    assert stored["id_number"] == RESIDENT_ID
    assert stored["birth_date"] == dt.date(1949, 12, 31)
    assert stored["gender"] == 2
    assert stored["id_type"] == 1


async def test_legacy_and_current_forms_of_one_resident_id_share_a_party(
    identity: Identity,
) -> None:
    first17 = "44030619900307001"
    legacy = first17[:6] + first17[8:]  # drops the century and the check character

    first = await identity.service.linking.link_source_record(
        record("a", "1", id_type=1, id_number=first17 + check_character(first17))
    )
    second = await identity.service.linking.link_source_record(
        record("b", "1", id_type=1, id_number=legacy)
    )

    assert second.party_id == first.party_id


async def test_a_name_that_grows_past_its_limit_under_normalisation_is_refused_naming_it(
    identity: Identity,
) -> None:
    # 200 × U+0958 passes the 200-character check, then NFC makes it 400 characters: on
    # PostgreSQL the VARCHAR(200) insert would fail (INTERNAL to a caller), not name the field.
    with pytest.raises(InvalidArgument) as refused:
        await identity.service.linking.link_source_record(
            record("crm", "nfc", full_name="\u0958" * 200)
        )

    assert [v.field for v in refused.value.violations] == ["source_record.full_name"]


async def test_a_long_address_is_indexed_and_links_on_both_databases(identity: Identity) -> None:
    # 288 characters: longer than the candidate index's key column.
    address = "广东省深圳市南山区" + "科技园南区高新南一道" * 27
    first = await identity.service.linking.link_source_record(
        with_resident_id("core-banking", "CIF-1", full_name="王小明", address=address)
    )
    second = await identity.service.linking.link_source_record(
        with_resident_id("cards", "C-1", full_name="王小明", address=address)
    )
    assert second.party_id == first.party_id
    found = await identity.service.queries.find_parties(
        PartyQuery(id_type="RESIDENT_ID", id_number=RESIDENT_ID)
    )
    assert found == [first.party_id]


async def test_placeholder_values_are_ignored_not_refused(identity: Identity) -> None:
    outcome = await identity.service.linking.link_source_record(
        record("branch", "B-1", full_name="李雷", phone="无", email="N/A", address="-")
    )
    stored = await stored_record(identity.database, SourceRecordKey("branch", "B-1"))
    assert stored["party_id"] == outcome.party_id
    assert (stored["phone"], stored["email"], stored["address"]) == ("", "", "")


async def test_candidates_carry_what_their_stored_records_hold(identity: Identity) -> None:
    # Candidates are read from their rows by position, not built as StoredRecords: each must
    # be the raw record, key and party that its stored record gives, whatever its fields hold.
    inputs = [
        with_resident_id(
            "core", "c1", full_name="张伟", phone="13800138000", email="zhang.wei@example.com"
        ),
        record("cards", "k1", full_name="张伟", birth_date=(1949, 12, 31), gender=1),
        record("loans", "l1", full_name="張偉", id_type=3, id_number="E12345678", gender=2),
        record("branch", "b1", full_name="张伟", address="北京市朝阳区建国路88号"),
        record("callcentre", "t1", full_name="张伟", phone="13800138000"),
    ]
    for one in inputs:
        await identity.service.linking.link_source_record(one)
    keys = sorted({k for one in inputs for k in blocking_keys(extract_features(raw_of(one)))})

    async with SqlIdentityUnitOfWork(
        identity.database, codec.outgoing_event, lambda: None, PROTECTION
    ) as uow:
        itself, candidates = await uow.records.with_candidates(SourceRecordKey("core", "c1"), keys)
        stored = {s.key: s for s in await uow.records.get_many([c.key for c in candidates])}
        expected_itself = await uow.records.get(SourceRecordKey("core", "c1"))

    assert itself == expected_itself
    assert [c.key for c in candidates] == sorted(
        (SourceRecordKey(o.source_system, o.source_record_id) for o in inputs[1:]),
        key=lambda k: (k.source_system, k.source_record_id),
    )
    for candidate in candidates:
        assert candidate.party_id == stored[candidate.key].party_id
        assert candidate.raw == raw_record(stored[candidate.key].record)


def raw_of(one: SourceRecordInput) -> RawRecord:
    return raw_record(validate_source_record(one, NOW.date()))


async def test_a_birth_date_of_the_banks_today_is_accepted_while_utc_is_still_on_the_day_before(
    database_url: str,
) -> None:
    database = Database(database_url)
    await apply_migrations(database, DEFINITION.migrations)
    # 02:30 on 5 December in Shanghai: an account opened for a child born that night.
    late_evening_utc = dt.datetime(2026, 12, 4, 18, 30, tzinfo=dt.UTC)
    linking = use_cases(database, PROTECTION, clock=lambda: late_evening_utc).linking
    try:
        await linking.link_source_record(
            record("branch", "NEWBORN-1", full_name="王小宝", birth_date=(2026, 12, 5))
        )
        with pytest.raises(InvalidArgument) as caught:
            await linking.link_source_record(
                record("branch", "NEWBORN-2", full_name="王小贝", birth_date=(2026, 12, 6))
            )

        stored = await stored_record(database, SourceRecordKey("branch", "NEWBORN-1"))
        assert stored["birth_date"] == dt.date(2026, 12, 5)
        assert [v.field for v in caught.value.violations] == ["source_record.birth_date"]
    finally:
        await database.dispose()
