"""Resolution, steward operations and lookups over real storage (SQLite and PostgreSQL).

The service is built exactly as app.wire builds it, with the shipped model and a clock the tests
move forward between calls (so "older party" and "most recent" mean something).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from google.protobuf.message import Message

from zhike.identity.v1 import events_pb2
from zhike_identity.app import DEFINITION
from zhike_identity.domain import linking, stewardship
from zhike_identity.domain.explanations import Explanation
from zhike_identity.domain.matching.comparison import FIELDS
from zhike_identity.domain.matching.model import default_model
from zhike_identity.domain.model import (
    Decider,
    HistoryEntry,
    LinkDecisionKind,
    LinkOutcome,
    PartyChange,
    SourceRecordInput,
    SourceRecordKey,
)
from zhike_identity.domain.parties import move as parties_move
from zhike_identity.domain.parties import surviving_party
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.queries import PartyQuery
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.records import SqlRecordStore
from zhike_identity.storage.repository import SqlIdentityUnitOfWork
from zhike_identity.storage.schema import link_decision, party
from zhike_runtime.db import Database
from zhike_runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.processes import PostgresCluster
from zhike_runtime.testing.services import fixed_field_keys

from ..use_cases import UseCases, use_cases

START = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.UTC)
MODEL = default_model()

# Valid resident ID numbers (ISO 7064 MOD 11-2 check characters).
ID_MAN_1990 = "110105199003070017"  # born 1990-03-07, male
ID_OTHER_MAN_1990 = "110105199003070033"  # the same birth date and sex, another person
ID_WOMAN_1985 = "440306198505120028"  # born 1985-05-12, female

PARTIES_MERGED = events_pb2.PartiesMerged.DESCRIPTOR.full_name
PARTY_SPLIT = events_pb2.PartySplit.DESCRIPTOR.full_name
PARTY_CREATED = events_pb2.PartyCreated.DESCRIPTOR.full_name
GOLDEN_RECORD_CHANGED = events_pb2.GoldenRecordChanged.DESCRIPTOR.full_name
SOURCE_RECORD_MOVED = events_pb2.SourceRecordMoved.DESCRIPTOR.full_name

FULL_RESIDENT_ID = re.compile(r"\d{17}[\dX]|\d{15}")
FULL_MOBILE = re.compile(r"1[3-9]\d{9}")

PROTECTION = RecordProtection(fixed_field_keys())


class Clock:
    """A fixed clock that the test moves forward."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, minutes: int = 1) -> None:
        self.now += dt.timedelta(minutes=minutes)


@dataclasses.dataclass
class Identity:
    service: UseCases
    database: Database
    clock: Clock

    async def link(self, record: SourceRecordInput) -> LinkOutcome:
        self.clock.advance()
        return await self.service.linking.link_source_record(record)

    async def keys_of(self, party_id: str) -> set[SourceRecordKey]:
        return {r.key for r in (await self.service.queries.get_party(party_id)).records}


async def started(database_url: str) -> Identity:
    database = Database(database_url)
    await apply_migrations(database, DEFINITION.migrations)
    clock = Clock()
    # As app.wire builds it; the relay's notify is not needed here.
    service = use_cases(database, PROTECTION, clock=clock)
    return Identity(service, database, clock)


@pytest.fixture
async def identity(database_url: str) -> AsyncIterator[Identity]:
    started_identity = await started(database_url)
    try:
        yield started_identity
    finally:
        await started_identity.database.dispose()


@pytest.fixture
async def pg_identity(postgres_cluster: PostgresCluster) -> AsyncIterator[Identity]:
    started_identity = await started(postgres_cluster.create_database())
    try:
        yield started_identity
    finally:
        await started_identity.database.dispose()


def key(source_system: str, source_record_id: str) -> SourceRecordKey:
    return SourceRecordKey(source_system, source_record_id)


def record(source_system: str, source_record_id: str, **values: Any) -> SourceRecordInput:
    return SourceRecordInput(source_system, source_record_id, **values)


async def outbox(database: Database) -> list[tuple[str, bytes]]:
    async with database.session() as session:
        rows = await session.execute(
            sa.select(outbox_event.c.event_type, outbox_event.c.payload).order_by(
                outbox_event.c.position
            )
        )
        return [(str(r.event_type), bytes(r.payload)) for r in rows]


async def events_of_type(database: Database, event_type: str, message: type[Message]) -> list[Any]:
    return [message.FromString(p) for t, p in await outbox(database) if t == event_type]


def changes(entries: Sequence[HistoryEntry]) -> list[PartyChange]:
    return [e.change for e in entries]


def entry(entries: Sequence[HistoryEntry], change: PartyChange) -> HistoryEntry:
    found = [e for e in entries if e.change is change]
    assert len(found) == 1, f"expected one {change} in {changes(entries)}"
    return found[0]


# --- 1. probabilistic linking ---------------------------------------------------------------


async def test_same_person_without_id_number_links_across_scripts(identity: Identity) -> None:
    first = await identity.link(
        record("cards", "C-1", full_name="刘建军", phone="13812345678", birth_date=(1980, 5, 3))
    )
    second = await identity.link(
        record("mobile", "M-1", full_name="劉建軍", phone="138 1234 5678", birth_date=(1980, 5, 3))
    )

    assert second.party_id == first.party_id
    assert second.party_created is False
    found = await identity.service.queries.get_party(first.party_id)
    linked = next(r for r in found.records if r.key == key("mobile", "M-1"))
    assert linked.evidence.decided_by is Decider.MODEL
    assert linked.evidence.matched == key("cards", "C-1")
    assert linked.evidence.weight is not None
    assert linked.evidence.weight >= MODEL.link_weight


async def test_common_name_with_different_birth_date_and_phone_stays_apart(
    identity: Identity,
) -> None:
    first = await identity.link(
        record("cards", "W-1", full_name="王伟", phone="13900001111", birth_date=(1975, 1, 2))
    )
    second = await identity.link(
        record("mobile", "W-2", full_name="王伟", phone="13700002222", birth_date=(1988, 9, 9))
    )

    assert second.party_created is True
    assert second.party_id != first.party_id


async def test_records_of_one_person_do_not_make_their_own_phone_too_common(
    identity: Identity,
) -> None:
    # A value held by too many *parties* stops counting (issue 3). Ten records of one customer
    # in ten systems, with the same name, mobile and e-mail, are one party, not a shared phone.
    outcomes = [
        await identity.link(
            record(
                f"system-{i}",
                "1",
                full_name="孙悟空",
                phone="13671829305",
                email="sun.wukong@163.com",
            )
        )
        for i in range(10)
    ]

    assert [o.party_id for o in outcomes] == [outcomes[0].party_id] * 10


# --- 2. bridging merge ----------------------------------------------------------------------


async def test_bridging_record_merges_both_parties_into_the_older_one(identity: Identity) -> None:
    # B (no ID number) arrives first, so its party is the older one.
    b = await identity.link(
        record(
            "call_centre",
            "B-1",
            full_name="陈静怡",
            phone="13671829305",
            email="chen.jingyi@163.com",
        )
    )
    a = await identity.link(
        record("core_deposits", "A-1", full_name="陈静怡", id_type=1, id_number=ID_WOMAN_1985)
    )
    assert a.party_id != b.party_id

    c = await identity.link(
        record(
            "mobile_banking",
            "C-1",
            full_name="陈静怡",
            id_type=1,
            id_number=ID_WOMAN_1985,
            phone="13671829305",
            email="chen.jingyi@163.com",
        )
    )

    assert c.party_id == b.party_id
    assert c.party_created is False
    assert c.merged_party_ids == (a.party_id,)
    retired = await identity.service.queries.get_party(a.party_id)
    assert retired.party_id == b.party_id
    assert {r.key for r in retired.records} == {
        key("call_centre", "B-1"),
        key("core_deposits", "A-1"),
        key("mobile_banking", "C-1"),
    }
    merged_into = entry(
        await identity.service.queries.party_history(a.party_id), PartyChange.MERGED_INTO
    )
    assert merged_into.other_party_id == b.party_id
    assert merged_into.decided_by is Decider.MODEL
    assert merged_into.model_version == MODEL.version
    assert merged_into.source_records == (key("core_deposits", "A-1"),)
    absorbed = entry(await identity.service.queries.party_history(b.party_id), PartyChange.ABSORBED)
    assert absorbed.other_party_id == a.party_id
    assert absorbed.decided_by is Decider.MODEL
    assert absorbed.model_version == MODEL.version
    merges = await events_of_type(identity.database, PARTIES_MERGED, events_pb2.PartiesMerged)
    assert [(m.surviving_party_id, list(m.retired_party_ids)) for m in merges] == [
        (b.party_id, [a.party_id])
    ]


# --- 3. vetoes ------------------------------------------------------------------------------


async def test_two_valid_different_resident_ids_are_never_one_party(identity: Identity) -> None:
    shared: dict[str, Any] = {
        "full_name": "赵磊",
        "id_type": 1,
        "phone": "13912345670",
        "email": "zhao.lei@qq.com",
        "gender": 1,
        "address": "北京市朝阳区建国路88号",
    }
    first = await identity.link(record("core", "V-1", id_number=ID_MAN_1990, **shared))
    second = await identity.link(record("cards", "V-2", id_number=ID_OTHER_MAN_1990, **shared))

    assert second.party_created is True
    assert second.party_id != first.party_id


async def test_bridging_record_cannot_merge_parties_with_different_valid_resident_ids(
    identity: Identity,
) -> None:
    x = await identity.link(
        record(
            "core", "X-1", full_name="赵磊", id_type=1, id_number=ID_MAN_1990, phone="13912345670"
        )
    )  # born 1990-03-07, as the other one
    y = await identity.link(
        record(
            "cards",
            "Y-1",
            full_name="赵磊",
            id_type=1,
            id_number=ID_OTHER_MAN_1990,
            email="zhao.lei@qq.com",
        )
    )
    assert x.party_id != y.party_id

    bridge = await identity.link(
        record(
            "mobile",
            "Z-1",
            full_name="赵磊",
            phone="13912345670",
            email="zhao.lei@qq.com",
            birth_date=(1990, 3, 7),
        )
    )
    for other in (key("core", "X-1"), key("cards", "Y-1")):
        assert (
            await identity.service.explanations.explain_link(key("mobile", "Z-1"), other)
        ).decision == "link"

    assert bridge.merged_party_ids == ()
    assert bridge.party_id in (x.party_id, y.party_id)
    assert (await identity.service.queries.get_party(x.party_id)).party_id == x.party_id
    assert (await identity.service.queries.get_party(y.party_id)).party_id == y.party_id
    assert key("core", "X-1") not in await identity.keys_of(y.party_id)
    assert await events_of_type(identity.database, PARTIES_MERGED, events_pb2.PartiesMerged) == []


async def test_a_golden_record_committed_after_another_is_stamped_after_it(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The profile keeps the golden record with the latest time: one committed later but stamped
    # earlier would lose, and the party's birth date (for segment rules on age) with it.
    wang = {"full_name": "王芳", "phone": "13700001111", "email": "wang.fang@163.com"}
    first = await identity.link(record("core", "G-1", **wang))
    take = SqlIdentityUnitOfWork.lock
    meanwhile: list[LinkOutcome] = []
    started: list[bool] = []

    async def another_link_first(unit: SqlIdentityUnitOfWork, names: Any) -> None:
        if not started:  # the link below waits; another replica's link commits first
            started.append(True)
            g3 = record("app", "G-3", address="北京市朝阳区建国路88号", **wang)
            meanwhile.append(await identity.link(g3))
            identity.clock.advance()
        await take(unit, names)

    monkeypatch.setattr(SqlIdentityUnitOfWork, "lock", another_link_first)
    await identity.link(
        record("cards", "G-2", id_type=1, id_number=ID_WOMAN_1985, gender=2, **wang)
    )

    assert meanwhile[0].party_id == first.party_id
    golden = await events_of_type(
        identity.database, GOLDEN_RECORD_CHANGED, events_pb2.GoldenRecordChanged
    )
    latest = max(golden, key=lambda event: event.change_time.ToDatetime())
    assert latest.golden_record.birth_date.value == "1985-05-12"


# --- 4. re-resolution of updated records ----------------------------------------------------


async def test_a_record_sent_again_unchanged_stays_in_the_party_it_matched_and_publishes_nothing(
    identity: Identity,
) -> None:
    # A small store, where one record more or less moves a name's frequency: the record sent
    # again must be scored as it was the first time, not with its own values counted twice.
    for n, name in enumerate(["赵一", "钱二", "孙三", "李四", "周五", "吴六", "郑七"]):
        await identity.link(record("filler", f"F-{n}", full_name=name, phone=f"1350000000{n}"))
    matched = await identity.link(record("core", "C-1", full_name="钱学森", phone="13912340000"))
    values = record("cards", "X-1", full_name="钱学森", phone="13912340000")
    assert (await identity.link(values)).party_id == matched.party_id
    events_before = len(await outbox(identity.database))

    again = await identity.link(values)  # a channel's retry

    assert (again.party_id, again.party_created) == (matched.party_id, False)
    assert (await outbox(identity.database))[events_before:] == []


async def test_updated_record_that_no_longer_matches_moves_out_of_its_party(
    identity: Identity,
) -> None:
    first = await identity.link(
        record(
            "core",
            "U-1",
            full_name="黄晓明",
            id_type=1,
            id_number=ID_MAN_1990,
            phone="13802461357",
            email="huang.xm@163.com",
        )
    )
    second = await identity.link(
        record("cards", "U-2", full_name="黄晓明", phone="13802461357", email="huang.xm@163.com")
    )
    assert second.party_id == first.party_id
    events_before = len(await outbox(identity.database))

    # The card system corrects the record: it was another customer all along.
    moved = await identity.link(
        record("cards", "U-2", full_name="周杰", phone="13511112222", email="zhou.jie@qq.com")
    )

    assert moved.party_id != first.party_id
    assert await identity.keys_of(first.party_id) == {key("core", "U-1")}
    assert await identity.keys_of(moved.party_id) == {key("cards", "U-2")}
    new_events = (await outbox(identity.database))[events_before:]
    moves = [
        events_pb2.SourceRecordMoved.FromString(p)
        for t, p in new_events
        if t == SOURCE_RECORD_MOVED
    ]
    assert [(m.source_record.source_record_id, m.from_party_id, m.to_party_id) for m in moves] == [
        ("U-2", first.party_id, moved.party_id)
    ]
    out = entry(
        await identity.service.queries.party_history(first.party_id), PartyChange.RECORD_MOVED_OUT
    )
    assert (out.other_party_id, out.source_records) == (moved.party_id, (key("cards", "U-2"),))
    came_in = entry(
        await identity.service.queries.party_history(moved.party_id), PartyChange.RECORD_MOVED_IN
    )
    assert (came_in.other_party_id, came_in.source_records) == (
        first.party_id,
        (key("cards", "U-2"),),
    )


async def test_updated_record_alone_in_its_party_keeps_the_party(identity: Identity) -> None:
    first = await identity.link(
        record("crm", "S-1", full_name="郑秀文", phone="13711112222", email="zheng@qq.com")
    )
    events_before = len(await outbox(identity.database))

    again = await identity.link(
        record("crm", "S-1", full_name="孙燕姿", phone="13633334444", email="sun@qq.com")
    )

    assert again.party_id == first.party_id
    assert again.party_created is False
    new_types = [t for t, _ in (await outbox(identity.database))[events_before:]]
    assert PARTY_CREATED not in new_types
    assert SOURCE_RECORD_MOVED not in new_types
    assert await identity.keys_of(first.party_id) == {key("crm", "S-1")}


# --- 5. steward merge and split -------------------------------------------------------------


def lin(source_system: str, source_record_id: str, phone: str, email: str) -> SourceRecordInput:
    return record(source_system, source_record_id, full_name="林志强", phone=phone, email=email)


async def test_a_record_whose_match_is_split_off_while_it_is_linked_follows_its_match(
    pg_identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = pg_identity
    a1 = await identity.link(lin("core", "M-1", "13600000001", "lin.a@163.com"))
    await identity.link(lin("cards", "M-2", "13600000001", "lin.a@163.com"))
    b1 = await identity.link(lin("loans", "N-1", "13700000002", "lin.b@qq.com"))
    await identity.link(lin("wealth", "N-2", "13700000002", "lin.b@qq.com"))
    steward = identity.service.stewardship
    merged = await steward.merge_parties([a1.party_id, b1.party_id], "steward-li", "one")
    read = SqlRecordStore.with_candidates
    split_off: list[str] = []

    async def read_then_split(store: SqlRecordStore, *args: Any) -> Any:
        found = await read(store, *args)
        if not split_off:  # a steward splits N-1 and N-2 off after the candidates were read
            split_off.append("")
            group_b = [key("loans", "N-1"), key("wealth", "N-2")]
            split_off[0] = await steward.split_party(merged, group_b, "steward-li", "two")
        return found

    monkeypatch.setattr(SqlRecordStore, "with_candidates", read_then_split)
    linked = await identity.link(lin("mobile", "N-3", "13700000002", "lin.b@qq.com"))

    assert linked.party_id == split_off[0]
    assert await identity.keys_of(merged) == {key("core", "M-1"), key("cards", "M-2")}


async def test_merge_then_split_restores_the_original_grouping(identity: Identity) -> None:
    a1 = await identity.link(lin("core", "M-1", "13600000001", "lin.a@163.com"))
    a2 = await identity.link(lin("cards", "M-2", "13600000001", "lin.a@163.com"))
    b1 = await identity.link(lin("loans", "N-1", "13700000002", "lin.b@qq.com"))
    b2 = await identity.link(lin("wealth", "N-2", "13700000002", "lin.b@qq.com"))
    assert a2.party_id == a1.party_id
    assert b2.party_id == b1.party_id
    assert b1.party_id != a1.party_id
    first, second = a1.party_id, b1.party_id
    group_a = {key("core", "M-1"), key("cards", "M-2")}
    group_b = {key("loans", "N-1"), key("wealth", "N-2")}

    identity.clock.advance()
    survivor = await identity.service.stewardship.merge_parties(
        [second, first], "steward-li", "one customer, per the branch"
    )
    assert survivor == first  # the older party survives
    assert await identity.keys_of(second) == group_a | group_b

    identity.clock.advance()
    new_party = await identity.service.stewardship.split_party(
        survivor, sorted(group_b, key=str), "steward-li", "two customers: ID cards checked"
    )

    assert new_party not in (first, second)
    assert await identity.keys_of(first) == group_a
    assert await identity.keys_of(new_party) == group_b
    types = [t for t, _ in await outbox(identity.database)]
    # The retired id's records all left: it now leads to the new party.
    assert [t for t in types if t in (PARTIES_MERGED, PARTY_SPLIT)] == [
        PARTIES_MERGED,
        PARTY_SPLIT,
        PARTIES_MERGED,
    ]
    merges = await events_of_type(identity.database, PARTIES_MERGED, events_pb2.PartiesMerged)
    assert [
        (m.surviving_party_id, list(m.retired_party_ids), list(m.forwarding_versions))
        for m in merges
    ] == [(first, [second], [1]), (new_party, [second], [2])]
    (split,) = await events_of_type(identity.database, PARTY_SPLIT, events_pb2.PartySplit)
    assert (split.party_id, split.new_party_id) == (first, new_party)
    assert {(k.source_system, k.source_record_id) for k in split.source_records} == {
        ("loans", "N-1"),
        ("wealth", "N-2"),
    }
    history = await identity.service.queries.party_history(first)
    absorbed = entry(history, PartyChange.ABSORBED)
    split_entry = entry(history, PartyChange.SPLIT)
    assert changes(history).index(PartyChange.ABSORBED) < changes(history).index(PartyChange.SPLIT)
    assert (absorbed.decided_by, absorbed.steward, absorbed.reason) == (
        Decider.STEWARD,
        "steward-li",
        "one customer, per the branch",
    )
    assert absorbed.other_party_id == second
    assert (split_entry.decided_by, split_entry.steward, split_entry.reason) == (
        Decider.STEWARD,
        "steward-li",
        "two customers: ID cards checked",
    )
    assert split_entry.other_party_id == new_party
    assert set(split_entry.source_records) == group_b

    # The source system now sends N-1 with M-1's phone and e-mail: the model alone would link
    # it, but the split recorded that these are different people.
    relinked = await identity.link(lin("loans", "N-1", "13600000001", "lin.a@163.com"))

    assert relinked.party_id != first
    assert await identity.keys_of(first) == group_a
    explanation = await identity.service.explanations.explain_link(
        key("loans", "N-1"), key("core", "M-1")
    )
    assert explanation.total_weight >= MODEL.link_weight
    assert (explanation.decision, explanation.guardrail) == ("no_link", "steward_never_link")


async def test_a_split_tells_each_retired_id_of_a_chain_where_it_leads_with_a_newer_version(
    identity: Identity,
) -> None:
    a = await identity.link(lin("core", "M-1", "13600000001", "lin.a@163.com"))
    await identity.link(lin("cards", "M-2", "13600000001", "lin.a@163.com"))
    b = await identity.link(lin("loans", "N-1", "13700000002", "lin.b@qq.com"))
    await identity.link(lin("wealth", "N-2", "13700000002", "lin.b@qq.com"))
    c = await identity.link(
        record("branch", "O-1", full_name="张敏", phone="13800000003", email="zhang.min@126.com")
    )
    first, second, third = a.party_id, b.party_id, c.party_id
    identity.clock.advance()
    await identity.service.stewardship.merge_parties([third, second], "steward-li", "same")
    identity.clock.advance()
    await identity.service.stewardship.merge_parties([second, first], "steward-li", "same")
    identity.clock.advance()

    # N-1 leaves: the second id's records part (it leads nowhere); none of the third's leave
    # (it leads straight to the party kept, no longer through the second).
    await identity.service.stewardship.split_party(
        first, [key("loans", "N-1")], "steward-li", "two customers"
    )

    ended_type = events_pb2.PartyForwardingEnded.DESCRIPTOR.full_name
    types = [t for t, _ in await outbox(identity.database)]
    assert [t for t in types if t in (PARTIES_MERGED, PARTY_SPLIT, ended_type)] == [
        PARTIES_MERGED,
        PARTIES_MERGED,
        PARTY_SPLIT,
        ended_type,
        PARTIES_MERGED,
    ]
    merges = await events_of_type(identity.database, PARTIES_MERGED, events_pb2.PartiesMerged)
    assert [
        (m.surviving_party_id, list(m.retired_party_ids), list(m.forwarding_versions))
        for m in merges
    ] == [(second, [third], [1]), (first, [second], [1]), (first, [third], [2])]
    (ended,) = await events_of_type(identity.database, ended_type, events_pb2.PartyForwardingEnded)
    assert (ended.party_id, ended.forwarding_version, ended.kept_party_id) == (second, 2, first)


async def test_every_change_of_a_records_party_carries_a_higher_link_version(
    identity: Identity,
) -> None:
    """Consumers keep the link with the highest version (the profile does), so a record's
    versions must rise with each change of its party, in commit order, whatever the times say."""
    a1 = await identity.link(lin("core", "V-1", "13600000011", "lin.v@163.com"))
    await identity.link(lin("cards", "V-2", "13600000011", "lin.v@163.com"))
    b1 = await identity.link(lin("loans", "W-1", "13700000012", "lin.w@qq.com"))
    survivor = await identity.service.stewardship.merge_parties(
        [a1.party_id, b1.party_id], "steward-li", "one customer"
    )  # W-1 joins the survivor: version 2, carried by no per-record event
    new_party = await identity.service.stewardship.split_party(
        survivor, [key("loans", "W-1")], "steward-li", "two customers"
    )
    identity.clock.now = START  # a clock that went back changes nothing
    moved = await identity.link(
        record("cards", "V-2", full_name="周杰", phone="13511112222", email="zhou.jie@qq.com")
    )

    (linked,) = [
        e
        for e in await events_of_type(
            identity.database,
            events_pb2.SourceRecordLinked.DESCRIPTOR.full_name,
            events_pb2.SourceRecordLinked,
        )
        if e.source_record.source_record_id == "W-1"
    ]
    (split,) = await events_of_type(identity.database, PARTY_SPLIT, events_pb2.PartySplit)
    (move,) = await events_of_type(
        identity.database, SOURCE_RECORD_MOVED, events_pb2.SourceRecordMoved
    )
    assert linked.link_version == 1
    assert (split.new_party_id, list(split.link_versions)) == (new_party, [3])
    assert (move.to_party_id, move.link_version) == (moved.party_id, 2)


# --- 6. steward decisions -------------------------------------------------------------------


def ma(source_system: str, source_record_id: str, phone: str, email: str) -> SourceRecordInput:
    return record(
        source_system,
        source_record_id,
        full_name="马云飞",
        phone=phone,
        email=email,
        birth_date=(1970, 1, 1),
    )


async def test_never_link_holds_against_a_record_that_bridges_the_two(identity: Identity) -> None:
    x = await identity.link(ma("core", "X-1", "13300000007", "ma.x@163.com"))
    y = await identity.link(ma("cards", "Y-1", "13300000008", "ma.y@163.com"))
    assert x.party_id != y.party_id
    identity.clock.advance()
    assert await identity.service.stewardship.record_decision(
        key("core", "X-1"), key("cards", "Y-1"), LinkDecisionKind.NEVER, "steward-wu", "twins"
    ) == (x.party_id, y.party_id)

    # Phone of X-1, e-mail of Y-1: the model links it to each of them.
    bridge = await identity.link(ma("mobile", "Z-1", "13300000007", "ma.y@163.com"))
    for other in (key("core", "X-1"), key("cards", "Y-1")):
        assert (
            await identity.service.explanations.explain_link(key("mobile", "Z-1"), other)
        ).decision == "link"

    assert bridge.merged_party_ids == ()
    assert (await identity.service.queries.get_party(x.party_id)).party_id == x.party_id
    assert (await identity.service.queries.get_party(y.party_id)).party_id == y.party_id
    assert key("cards", "Y-1") not in await identity.keys_of(x.party_id)


async def test_never_link_within_one_party_is_failed_precondition(identity: Identity) -> None:
    x = await identity.link(ma("core", "X-1", "13300000007", "ma.x@163.com"))
    y = await identity.link(ma("cards", "Y-1", "13300000007", "ma.x@163.com"))
    assert x.party_id == y.party_id

    with pytest.raises(FailedPrecondition):
        await identity.service.stewardship.record_decision(
            key("core", "X-1"), key("cards", "Y-1"), LinkDecisionKind.NEVER, "steward-wu", ""
        )

    assert await identity.keys_of(x.party_id) == {key("core", "X-1"), key("cards", "Y-1")}


async def test_always_link_merges_the_two_parties(identity: Identity) -> None:
    x = await identity.link(ma("core", "X-1", "13300000007", "ma.x@163.com"))
    y = await identity.link(ma("cards", "Y-1", "13300000008", "ma.y@163.com"))
    assert x.party_id != y.party_id
    identity.clock.advance()

    parties = await identity.service.stewardship.record_decision(
        key("core", "X-1"), key("cards", "Y-1"), LinkDecisionKind.ALWAYS, "steward-wu", "same"
    )

    assert parties == (x.party_id, x.party_id)
    assert (await identity.service.queries.get_party(y.party_id)).party_id == x.party_id
    assert await identity.keys_of(x.party_id) == {key("core", "X-1"), key("cards", "Y-1")}
    absorbed = entry(await identity.service.queries.party_history(x.party_id), PartyChange.ABSORBED)
    assert (absorbed.decided_by, absorbed.steward) == (Decider.STEWARD, "steward-wu")
    (merge,) = await events_of_type(identity.database, PARTIES_MERGED, events_pb2.PartiesMerged)
    assert (merge.surviving_party_id, list(merge.retired_party_ids)) == (x.party_id, [y.party_id])


async def test_always_link_does_not_keep_a_record_that_now_has_another_resident_id_in_the_party(
    identity: Identity,
) -> None:
    y = await identity.link(
        record("core", "Y-1", full_name="赵磊", id_type=1, id_number=ID_MAN_1990)
    )
    x = await identity.link(record("cards", "X-1", full_name="赵磊", phone="13911112222"))
    identity.clock.advance()
    await identity.service.stewardship.record_decision(
        key("cards", "X-1"), key("core", "Y-1"), LinkDecisionKind.ALWAYS, "steward-wu", "same"
    )
    assert await identity.keys_of(y.party_id) == {key("core", "Y-1"), key("cards", "X-1")}
    assert x.party_id != y.party_id

    # The card system sends X-1 again with another man's valid resident ID.
    relinked = await identity.link(
        record(
            "cards",
            "X-1",
            full_name="赵磊",
            phone="13911112222",
            id_type=1,
            id_number=ID_OTHER_MAN_1990,
        )
    )

    assert relinked.party_id != y.party_id
    assert await identity.keys_of(y.party_id) == {key("core", "Y-1")}
    assert await identity.keys_of(relinked.party_id) == {key("cards", "X-1")}


async def two_parties_with_different_resident_ids(identity: Identity) -> tuple[str, str]:
    x = await identity.link(
        record("core", "R-1", full_name="赵磊", id_type=1, id_number=ID_MAN_1990)
    )
    y = await identity.link(
        record("cards", "R-2", full_name="赵磊", id_type=1, id_number=ID_OTHER_MAN_1990)
    )
    assert x.party_id != y.party_id
    identity.clock.advance()
    return x.party_id, y.party_id


async def assert_unchanged(identity: Identity, parties: Sequence[str], events: int) -> None:
    for party_id in parties:
        assert (await identity.service.queries.get_party(party_id)).party_id == party_id
        assert changes(await identity.service.queries.party_history(party_id)) == [
            PartyChange.CREATED,
            PartyChange.RECORD_LINKED,
        ]
    assert len(await outbox(identity.database)) == events


async def test_a_steward_cannot_merge_parties_with_different_valid_resident_ids(
    identity: Identity,
) -> None:
    x, y = await two_parties_with_different_resident_ids(identity)
    events = len(await outbox(identity.database))

    with pytest.raises(FailedPrecondition, match="different valid resident ID numbers"):
        await identity.service.stewardship.merge_parties([x, y], "steward-li", "looks like one man")
    with pytest.raises(FailedPrecondition, match="different valid resident ID numbers"):
        await identity.service.stewardship.record_decision(
            key("core", "R-1"), key("cards", "R-2"), LinkDecisionKind.ALWAYS, "steward-li", ""
        )

    await assert_unchanged(identity, (x, y), events)
    async with identity.database.session() as session:
        decisions = await session.execute(sa.select(sa.func.count()).select_from(link_decision))
        assert decisions.scalar_one() == 0  # the refused "always link" was not recorded


async def test_a_merge_naming_a_party_twice_is_invalid_and_changes_nothing(
    identity: Identity,
) -> None:
    # Merged into itself, a party would forward to itself, and every read of it would fail.
    x, y = await two_parties_with_different_resident_ids(identity)
    events = len(await outbox(identity.database))

    with pytest.raises(InvalidArgument) as caught:
        await identity.service.stewardship.merge_parties([x, x, y], "steward-li", "one man")

    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("party_ids[1]", "repeats party_ids[0]")
    ]
    await assert_unchanged(identity, (x, y), events)


async def test_a_merge_or_split_of_more_than_a_request_may_hold_is_invalid(
    identity: Identity,
) -> None:
    # Each party or record is locked in one transaction: 10^5 of them would hold every lock.
    many_parties = [str(uuid.uuid4()) for _ in range(stewardship.MAX_MERGED_PARTIES + 1)]
    many_records = [key("core", f"R-{n}") for n in range(stewardship.MAX_SPLIT_RECORDS + 1)]

    with pytest.raises(InvalidArgument) as merging:
        await identity.service.stewardship.merge_parties(many_parties, "steward-li", "")
    with pytest.raises(InvalidArgument) as splitting:
        await identity.service.stewardship.split_party(
            str(uuid.uuid4()), many_records, "steward-li", ""
        )

    assert [v.field for v in merging.value.violations] == ["party_ids"]
    assert [v.field for v in splitting.value.violations] == ["source_records"]


async def test_a_stewards_reason_is_stored_as_its_length_was_checked(
    identity: Identity,
) -> None:
    # 600 code points that normalise to 300: within the 500 allowed once normalised, and
    # stored normalised (PostgreSQL would refuse the raw text as too long for its column).
    x = await identity.link(ma("core", "X-1", "13300000007", "ma.x@163.com"))
    y = await identity.link(ma("cards", "Y-1", "13300000008", "ma.y@163.com"))
    decomposed = "e\u0301" * 300

    survivor = await identity.service.stewardship.merge_parties(
        [x.party_id, y.party_id], "steward-li", decomposed
    )

    absorbed = entry(await identity.service.queries.party_history(survivor), PartyChange.ABSORBED)
    assert absorbed.reason == "\u00e9" * 300


async def test_a_steward_cannot_merge_records_another_steward_kept_apart(
    identity: Identity,
) -> None:
    x = await identity.link(ma("core", "X-1", "13300000007", "ma.x@163.com"))
    y = await identity.link(ma("cards", "Y-1", "13300000008", "ma.y@163.com"))
    z = await identity.link(ma("loans", "Z-1", "13300000009", "ma.z@163.com"))
    assert len({x.party_id, y.party_id, z.party_id}) == 3
    identity.clock.advance()
    await identity.service.stewardship.record_decision(
        key("core", "X-1"), key("cards", "Y-1"), LinkDecisionKind.NEVER, "steward-wu", "twins"
    )
    events = len(await outbox(identity.database))

    with pytest.raises(FailedPrecondition, match="kept apart by a steward's never-link"):
        await identity.service.stewardship.merge_parties(
            [x.party_id, y.party_id, z.party_id], "steward-li", ""
        )
    await assert_unchanged(identity, (x.party_id, y.party_id, z.party_id), events)

    # An "always link" for the pair replaces the "never link", and merges them.
    await identity.service.stewardship.record_decision(
        key("core", "X-1"), key("cards", "Y-1"), LinkDecisionKind.ALWAYS, "steward-li", "not twins"
    )
    assert await identity.keys_of(x.party_id) == {key("core", "X-1"), key("cards", "Y-1")}


# --- 7. reviews -----------------------------------------------------------------------------

REVIEW_NAMES = ("李明华", "张伟国", "何家辉")


async def review_pairs(identity: Identity) -> list[tuple[SourceRecordKey, SourceRecordKey]]:
    """Pairs whose weight lands in the review band: the same name, birth date and sex, nothing
    else to go on."""
    pairs = []
    for i, name in enumerate(REVIEW_NAMES):
        values: dict[str, Any] = {"full_name": name, "birth_date": (1985, 3, 12 + i), "gender": 1}
        left = await identity.link(record("crm", f"R-{i}", **values))
        right = await identity.link(record("loans", f"R-{i}", **values))
        assert left.party_id != right.party_id
        pair = (key("crm", f"R-{i}"), key("loans", f"R-{i}"))
        explanation = await identity.service.explanations.explain_link(*pair)
        assert MODEL.review_weight <= explanation.total_weight < MODEL.link_weight
        assert explanation.decision == "review"
        pairs.append(pair)
    return pairs


async def test_possible_matches_are_listed_for_review_with_their_parties(
    identity: Identity,
) -> None:
    pairs = await review_pairs(identity)

    reviews, token = await identity.service.stewardship.list_reviews(0, "")

    assert token == ""
    assert {frozenset((r.record_a, r.record_b)) for r, _, _ in reviews} == {
        frozenset(p) for p in pairs
    }
    for review, party_a, party_b in reviews:
        assert (
            party_a == (await identity.service.queries.find_parties(PartyQuery(review.record_a)))[0]
        )
        assert (
            party_b == (await identity.service.queries.find_parties(PartyQuery(review.record_b)))[0]
        )
        assert party_a != party_b
        assert MODEL.review_weight <= review.weight < MODEL.link_weight


async def test_resolving_a_review_as_link_merges_and_cannot_be_resolved_twice(
    identity: Identity,
) -> None:
    await review_pairs(identity)
    reviews, _ = await identity.service.stewardship.list_reviews(0, "")
    review, party_a, party_b = reviews[0]
    identity.clock.advance()

    resolved = await identity.service.stewardship.resolve_review(
        review.review_id, True, "steward-he"
    )

    assert resolved[0] == resolved[1]
    assert set(resolved) <= {party_a, party_b}
    assert await identity.keys_of(party_a) == {review.record_a, review.record_b}
    assert (await identity.service.queries.get_party(party_b)).party_id == resolved[0]
    left, _ = await identity.service.stewardship.list_reviews(0, "")
    assert review.review_id not in {r.review_id for r, _, _ in left}
    assert len(left) == len(REVIEW_NAMES) - 1
    with pytest.raises(FailedPrecondition):
        await identity.service.stewardship.resolve_review(review.review_id, False, "steward-he")
    with pytest.raises(NotFound):
        await identity.service.stewardship.resolve_review(str(uuid.uuid4()), True, "steward-he")


async def test_review_pages_of_one_walk_every_review(identity: Identity) -> None:
    await review_pairs(identity)
    everything, _ = await identity.service.stewardship.list_reviews(0, "")

    walked: list[str] = []
    token = ""
    for _ in range(len(REVIEW_NAMES) + 2):
        page, token = await identity.service.stewardship.list_reviews(1, token)
        assert len(page) <= 1
        walked += [r.review_id for r, _, _ in page]
        if not token:
            break

    assert token == ""
    assert walked == [r.review_id for r, _, _ in everything]
    assert len(set(walked)) == len(REVIEW_NAMES)


@pytest.mark.parametrize("token", ["garbage", "%00|../", "\u202e|x"])
async def test_garbage_page_token_is_invalid_argument(identity: Identity, token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await identity.service.stewardship.list_reviews(1, token)

    assert [v.field for v in caught.value.violations] == ["page_token"]


# --- 8. explanations ------------------------------------------------------------------------


def assert_masked(explanation: Explanation) -> None:
    for f in explanation.fields:
        for value in (f.value_a, f.value_b):
            assert not FULL_RESIDENT_ID.search(value), (f.field, value)
            assert not FULL_MOBILE.search(value), (f.field, value)


def assert_adds_up(explanation: Explanation) -> None:
    assert [f.field for f in explanation.fields] == list(FIELDS)
    assert explanation.prior_weight == pytest.approx(MODEL.prior_weight)
    assert explanation.total_weight == pytest.approx(
        explanation.prior_weight + sum(f.weight for f in explanation.fields)
    )
    assert explanation.link_weight == MODEL.link_weight
    assert explanation.review_weight == MODEL.review_weight
    assert explanation.model_version == MODEL.version
    assert 0.0 <= explanation.match_probability <= 1.0


async def test_explanation_of_a_matching_pair_is_masked_and_adds_up(identity: Identity) -> None:
    await identity.link(
        record(
            "core",
            "E-1",
            full_name="刘建军",
            id_type=1,
            id_number=ID_MAN_1990,
            phone="13812345678",
            email="liu.jianjun@163.com",
        )
    )
    await identity.link(
        record(
            "cards",
            "E-2",
            full_name="LIU JIANJUN",
            id_type=1,
            id_number=ID_MAN_1990,
            phone="+86 138-1234-5678",
        )
    )

    explanation = await identity.service.explanations.explain_link(
        key("core", "E-1"), key("cards", "E-2")
    )

    assert_adds_up(explanation)
    assert_masked(explanation)
    assert (explanation.decision, explanation.guardrail) == ("link", None)
    assert explanation.same_party_now is True
    by_field = {f.field: f for f in explanation.fields}
    assert by_field["id"].level == "exact_valid"
    assert by_field["id"].value_a == by_field["id"].value_b != ""
    assert by_field["phone"].level == "same"
    assert by_field["phone"].value_a.endswith("5678")
    assert by_field["email"].level == "null"
    assert by_field["email"].weight == 0.0
    assert explanation.match_probability > 0.5


async def test_explanation_of_a_non_matching_pair_says_no_link(identity: Identity) -> None:
    await identity.link(
        record("cards", "W-1", full_name="王伟", phone="13900001111", birth_date=(1975, 1, 2))
    )
    await identity.link(
        record("mobile", "W-2", full_name="王伟", phone="13700002222", birth_date=(1988, 9, 9))
    )

    explanation = await identity.service.explanations.explain_link(
        key("cards", "W-1"), key("mobile", "W-2")
    )

    assert_adds_up(explanation)
    assert_masked(explanation)
    assert (explanation.decision, explanation.guardrail) == ("no_link", None)
    assert explanation.total_weight < MODEL.review_weight
    assert explanation.same_party_now is False
    by_field = {f.field: f.level for f in explanation.fields}
    assert (by_field["birth_date"], by_field["phone"]) == ("different", "different")


async def test_explanation_names_the_resident_id_veto(identity: Identity) -> None:
    shared: dict[str, Any] = {"full_name": "赵磊", "id_type": 1, "phone": "13912345670"}
    await identity.link(record("core", "V-1", id_number=ID_MAN_1990, **shared))
    await identity.link(record("cards", "V-2", id_number=ID_OTHER_MAN_1990, **shared))

    explanation = await identity.service.explanations.explain_link(
        key("core", "V-1"), key("cards", "V-2")
    )

    assert_masked(explanation)
    assert (explanation.decision, explanation.guardrail) == (
        "no_link",
        "different_valid_resident_ids",
    )
    assert {f.field: f.level for f in explanation.fields}["id"] == "different"


async def test_explanation_weighs_a_common_name_as_resolution_did(identity: Identity) -> None:
    # Six different 王伟 make the name common; then one 王伟 arrives from two systems.
    for i in range(6):
        await identity.link(record("crm", f"other-{i}", full_name="王伟", phone=f"1390000{i:04d}"))
    await identity.link(
        record("cards", "W-1", full_name="王伟", phone="13612345678", birth_date=(1975, 1, 2))
    )
    linked = await identity.link(
        record("mobile", "W-2", full_name="王伟", phone="13612345678", birth_date=(1975, 1, 2))
    )
    evidence = next(
        r.evidence
        for r in (await identity.service.queries.get_party(linked.party_id)).records
        if r.key == key("mobile", "W-2")
    )
    assert evidence.weight is not None

    explanation = await identity.service.explanations.explain_link(
        key("mobile", "W-2"), key("cards", "W-1")
    )

    # Nothing changed between the link and its explanation but the record itself: the
    # explanation must weigh the name by its frequency, as the link did.
    assert explanation.total_weight == pytest.approx(evidence.weight, abs=0.5)


async def test_explaining_an_unknown_record_is_not_found(identity: Identity) -> None:
    await identity.link(record("core", "E-1", full_name="刘建军"))

    with pytest.raises(NotFound):
        await identity.service.explanations.explain_link(key("core", "E-1"), key("core", "missing"))
    with pytest.raises(NotFound):
        await identity.service.explanations.explain_link(key("core", "missing"), key("core", "E-1"))


# --- 9. lookups -----------------------------------------------------------------------------


async def test_find_parties_by_each_criterion(identity: Identity) -> None:
    found = await identity.link(
        record(
            "core",
            "F-1",
            full_name="周涛",
            id_type=1,
            id_number=ID_MAN_1990,
            phone="13812345678",
            email="Zhou.Tao@qq.com",
        )
    )
    other = await identity.link(
        record("cards", "F-2", full_name="周涛", phone="13987654321", birth_date=(1991, 1, 1))
    )
    assert other.party_id != found.party_id
    expected = [found.party_id]
    legacy = ID_MAN_1990[:6] + ID_MAN_1990[8:17]
    find = identity.service.queries.find_parties

    assert await find(PartyQuery(source_record=key("core", "F-1"))) == expected
    assert await find(PartyQuery(id_type="RESIDENT_ID", id_number=ID_MAN_1990)) == expected
    assert await find(PartyQuery(id_number=ID_MAN_1990)) == expected
    assert await find(PartyQuery(id_type="RESIDENT_ID", id_number=legacy)) == expected
    assert await find(PartyQuery(phone="+86 138-1234-5678")) == expected
    assert await find(PartyQuery(email="ZHOU.TAO@QQ.COM")) == expected
    assert await find(PartyQuery(full_name="周涛", birth_date=dt.date(1990, 3, 7))) == expected
    assert await find(PartyQuery(full_name="周涛", birth_date=dt.date(1991, 1, 1))) == [
        other.party_id
    ]


async def test_find_parties_answers_the_survivor_once(identity: Identity) -> None:
    first = await identity.link(record("core", "F-1", full_name="周涛", phone="13812345678"))
    second = await identity.link(record("cards", "F-2", full_name="吴敏", phone="13812345678"))
    assert first.party_id != second.party_id
    identity.clock.advance()
    await identity.service.stewardship.merge_parties(
        [first.party_id, second.party_id], "steward-li", ""
    )

    assert await identity.service.queries.find_parties(PartyQuery(phone="13812345678")) == [
        first.party_id
    ]
    assert await identity.service.queries.find_parties(
        PartyQuery(source_record=key("cards", "F-2"))
    ) == [first.party_id]


async def test_find_parties_with_unknown_values_is_empty(identity: Identity) -> None:
    await identity.link(record("core", "F-1", full_name="周涛", id_type=1, id_number=ID_MAN_1990))
    find = identity.service.queries.find_parties

    assert await find(PartyQuery(source_record=key("core", "F-9"))) == []
    assert await find(PartyQuery(id_type="RESIDENT_ID", id_number=ID_OTHER_MAN_1990)) == []
    assert await find(PartyQuery(phone="13755556666")) == []
    assert await find(PartyQuery(email="nobody@qq.com")) == []
    assert await find(PartyQuery(full_name="周涛", birth_date=dt.date(1990, 3, 8))) == []


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        (PartyQuery(), ["by"]),
        (PartyQuery(phone="13812345678", email="a@qq.com"), ["by"]),
        (PartyQuery(source_record=SourceRecordKey("core", "F-1"), phone="13812345678"), ["by"]),
        (PartyQuery(source_record=SourceRecordKey("a.b", "F-1")), ["source_record.source_system"]),
        pytest.param(
            PartyQuery(id_type="RESIDENT_ID", id_number="110105199003070018"),
            ["id_number.id_number"],
            id="resident id with a wrong check character",
        ),
        (PartyQuery(phone="12345"), ["phone"]),
        (
            PartyQuery(full_name="123", birth_date=dt.date(1990, 3, 8)),
            ["name_and_birth_date.full_name"],
        ),
        (PartyQuery(full_name="周涛"), ["name_and_birth_date.birth_date"]),
    ],
)
async def test_find_parties_with_bad_criteria_is_invalid_argument(
    identity: Identity, query: PartyQuery, fields: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await identity.service.queries.find_parties(query)

    assert [v.field for v in caught.value.violations] == fields


# --- 10. golden record ----------------------------------------------------------------------


async def test_golden_record_prefers_the_verified_record_and_lists_recent_phones_first(
    identity: Identity,
) -> None:
    core = await identity.link(
        record(
            "core",
            "G-1",
            full_name="刘晓燕",
            id_type=1,
            id_number=ID_WOMAN_1985,
            phone="13671829305",
        )
    )
    # The call centre typed a homophone and swapped two digits of the birth date.
    call_centre = await identity.link(
        record(
            "call_centre",
            "G-2",
            full_name="刘小燕",
            phone="13671829305",
            email="xiaoyan.liu@163.com",
            birth_date=(1985, 5, 21),
        )
    )
    mobile = await identity.link(
        record(
            "mobile",
            "G-3",
            full_name="刘小燕",
            phone="13522223333",
            email="xiaoyan.liu@163.com",
            birth_date=(1985, 5, 21),
            gender=1,
        )
    )
    assert call_centre.party_id == mobile.party_id == core.party_id

    golden = (await identity.service.queries.get_party(core.party_id)).golden

    assert golden.full_name is not None
    assert (golden.full_name.value, golden.full_name.source) == ("刘晓燕", key("core", "G-1"))
    assert golden.birth_date is not None
    assert (golden.birth_date.value, golden.birth_date.source) == (
        "1985-05-12",
        key("core", "G-1"),
    )
    assert golden.gender is not None
    assert (golden.gender.value, golden.gender.source) == ("FEMALE", key("core", "G-1"))
    assert [(p.value, p.source) for p in golden.phones] == [
        ("+8613522223333", key("mobile", "G-3")),
        ("+8613671829305", key("call_centre", "G-2")),  # its most recent holder
    ]
    assert golden.id_number is not None
    # As stored: the API masks them per caller (transport tests).
    assert golden.id_number.value == ID_WOMAN_1985
    assert [e.value for e in golden.emails] == ["xiaoyan.liu@163.com"]


# --- 11. concurrency (PostgreSQL: SQLite serialises every writer) ---------------------------


async def test_concurrent_matching_records_without_id_number_end_in_one_party(
    pg_identity: Identity,
) -> None:
    outcomes = await asyncio.gather(
        *(
            pg_identity.service.linking.link_source_record(
                record(
                    f"system-{i}",
                    "1",
                    full_name="钱学森",
                    phone="13912340000",
                    email="qian.xuesen@163.com",
                )
            )
            for i in range(10)
        )
    )

    assert len({o.party_id for o in outcomes}) == 1
    assert sum(o.party_created for o in outcomes) == 1
    assert len(await pg_identity.keys_of(outcomes[0].party_id)) == 10


async def test_concurrent_bridging_records_leave_no_forwarding_loop(
    pg_identity: Identity,
) -> None:
    a = await pg_identity.link(
        record("core", "A-1", full_name="陈静怡", id_type=1, id_number=ID_WOMAN_1985)
    )
    b = await pg_identity.link(
        record(
            "call_centre",
            "B-1",
            full_name="陈静怡",
            phone="13671829305",
            email="chen.jingyi@163.com",
        )
    )
    assert a.party_id != b.party_id

    bridges = await asyncio.gather(
        pg_identity.service.linking.link_source_record(
            record(
                "mobile",
                "C-1",
                full_name="陈静怡",
                id_type=1,
                id_number=ID_WOMAN_1985,
                phone="13671829305",
                email="chen.jingyi@163.com",
            )
        ),
        pg_identity.service.linking.link_source_record(
            record(
                "wealth",
                "D-1",
                full_name="陈静怡",
                id_type=1,
                id_number=ID_WOMAN_1985,
                phone="13671829305",
                email="chen.jingyi@163.com",
            )
        ),
    )

    assert bridges[0].party_id == bridges[1].party_id == a.party_id
    async with pg_identity.database.session() as session:
        forwards = {
            row.party_id: row.retired_into
            for row in await session.execute(sa.select(party.c.party_id, party.c.retired_into))
        }
    for start in forwards:
        seen = {start}
        current = forwards[start]
        while current is not None:
            assert current not in seen, f"party forwarding loops at {current}"
            seen.add(current)
            current = forwards[current]
    assert forwards[b.party_id] == a.party_id
    assert forwards[a.party_id] is None
    survivor = await pg_identity.service.queries.get_party(b.party_id)
    assert survivor.party_id == a.party_id
    assert len(survivor.records) == 4


def merge_or_link_after_the_parties_are_read(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[object]]
) -> list[object]:
    """Runs `meanwhile` to its end (committed) once a steward's decision has read the two
    records' parties and before it locks them; what it returned, or the error it raised."""
    resolve = surviving_party
    calls: list[str] = []
    outcome: list[object] = []

    async def resolved_then_meanwhile(uow: IdentityUnitOfWork, party_id: str) -> str:
        found = await resolve(uow, party_id)
        calls.append(found)
        if len(calls) == 2:
            try:
                outcome.append(await meanwhile())
            except (FailedPrecondition, NotFound) as error:
                outcome.append(error)
        return found

    monkeypatch.setattr(stewardship, "surviving_party", resolved_then_meanwhile)
    return outcome


async def test_an_always_link_follows_a_record_whose_party_was_merged_while_it_waited(
    pg_identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Z's party is the oldest: a steward merging X's party into it retires X's.
    z = await pg_identity.link(ma("branch", "Z-1", "13300000006", "ma.z@163.com"))
    x = await pg_identity.link(ma("core", "X-1", "13300000007", "ma.x@163.com"))
    y = await pg_identity.link(ma("cards", "Y-1", "13300000008", "ma.y@163.com"))
    steward = pg_identity.service.stewardship
    merged = merge_or_link_after_the_parties_are_read(
        monkeypatch, lambda: steward.merge_parties([x.party_id, z.party_id], "steward-li", "")
    )

    parties = await steward.record_decision(
        key("core", "X-1"), key("cards", "Y-1"), LinkDecisionKind.ALWAYS, "steward-wu", "same"
    )

    assert merged == [z.party_id]
    assert parties == (z.party_id, z.party_id)
    assert await pg_identity.keys_of(z.party_id) == {
        key("branch", "Z-1"),
        key("core", "X-1"),
        key("cards", "Y-1"),
    }
    async with pg_identity.database.session() as session:
        forwards = dict(
            (await session.execute(sa.select(party.c.party_id, party.c.retired_into))).all()
        )
    assert forwards == {z.party_id: None, x.party_id: z.party_id, y.party_id: z.party_id}


async def test_a_never_link_is_refused_when_a_bridging_record_merged_the_parties_meanwhile(
    pg_identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = await pg_identity.link(ma("core", "X-1", "13300000007", "ma.x@163.com"))
    y = await pg_identity.link(ma("cards", "Y-1", "13300000008", "ma.y@163.com"))
    assert x.party_id != y.party_id
    # Phone of X-1, e-mail of Y-1: the model links it to both and merges their parties.
    bridged = merge_or_link_after_the_parties_are_read(
        monkeypatch,
        lambda: pg_identity.service.linking.link_source_record(
            ma("mobile", "B-1", "13300000007", "ma.y@163.com")
        ),
    )

    with pytest.raises(FailedPrecondition, match="same party"):
        await pg_identity.service.stewardship.record_decision(
            key("core", "X-1"), key("cards", "Y-1"), LinkDecisionKind.NEVER, "steward-wu", "twins"
        )

    [bridge] = bridged
    assert isinstance(bridge, LinkOutcome)
    assert bridge.merged_party_ids == (y.party_id,)
    async with pg_identity.database.session() as session:
        decisions = await session.execute(sa.select(sa.func.count()).select_from(link_decision))
        assert decisions.scalar_one() == 0


async def test_a_record_relinked_while_a_steward_merges_its_old_party_ends_where_it_was_placed(
    pg_identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # P is the oldest party: the steward's merge of O into P retires O.
    p = await pg_identity.link(ma("branch", "Q-1", "13300000006", "ma.q@163.com"))
    o = await pg_identity.link(ma("core", "R-1", "13300000007", "ma.r@163.com"))
    assert (await pg_identity.link(ma("cards", "S-1", "13300000007", "ma.r@163.com"))).party_id == (
        o.party_id
    )
    steward = pg_identity.service.stewardship
    move = parties_move
    merging: list[asyncio.Task[str]] = []

    async def merged_meanwhile(uow: IdentityUnitOfWork, *args: Any) -> None:
        # R-1 is about to move out of O (its new values are stored, its row locked).
        if not merging:
            merging.append(
                asyncio.create_task(
                    steward.merge_parties([o.party_id, p.party_id], "steward-li", "")
                )
            )
            await ended_or_waiting_for_a_lock(merging[0], pg_identity.database)
        await move(uow, *args)

    monkeypatch.setattr(linking, "move", merged_meanwhile)

    # R-1 is now someone else's record: another name, phone and e-mail.
    moved = await pg_identity.link(
        record("core", "R-1", full_name="林晓燕", phone="13522223333", email="lin.xy@163.com")
    )
    assert await merging[0] == p.party_id

    assert moved.party_id not in (o.party_id, p.party_id)
    assert await pg_identity.keys_of(moved.party_id) == {key("core", "R-1")}
    assert await pg_identity.keys_of(p.party_id) == {key("branch", "Q-1"), key("cards", "S-1")}


async def ended_or_waiting_for_a_lock(task: asyncio.Task[Any], database: Database) -> None:
    """Until `task` has ended, or waits for a lock (the caller's transaction holds it)."""
    for _ in range(400):
        if task.done():
            return
        async with database.session() as session:
            if await session.scalar(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the task neither ended nor waited for a lock within 20 s")


async def test_a_record_split_out_while_it_is_relinked_is_linked_again_from_its_new_party(
    pg_identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    o = await pg_identity.link(ma("core", "R-1", "13300000007", "ma.r@163.com"))
    await pg_identity.link(ma("cards", "S-1", "13300000007", "ma.r@163.com"))
    steward = pg_identity.service.stewardship
    read = SqlRecordStore.with_candidates
    split: list[str] = []

    async def read_then_split(store: SqlRecordStore, *args: Any) -> Any:
        # The link has read R-1 in O and its candidates, and locked nothing of O yet.
        found = await read(store, *args)
        if not split:
            split.append(
                await steward.split_party(o.party_id, [key("core", "R-1")], "steward-li", "")
            )
        return found

    monkeypatch.setattr(SqlRecordStore, "with_candidates", read_then_split)

    # R-1 is now someone else's record: another name, phone and e-mail.
    moved = await pg_identity.link(
        record("core", "R-1", full_name="林晓燕", phone="13522223333", email="lin.xy@163.com")
    )

    [new_party] = split
    assert moved.party_id == new_party
    assert await pg_identity.keys_of(new_party) == {key("core", "R-1")}
    assert await pg_identity.keys_of(o.party_id) == {key("cards", "S-1")}
