"""Identity events reach the profile: both services in-process on one real nats-server."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import Message

from zhike.identity.v1 import events_pb2, identity_service_pb2, party_pb2
from zhike.profile.v1 import profile_pb2, profile_service_pb2
from zhike_profile.storage import schema
from zhike_runtime.events import headers as h
from zhike_runtime.ids import new_id
from zhike_runtime.testing.services import answer_or_none, eventually

from .identity_and_profile import Stack

DLQ_STREAM = "ZHIKE_DLQ"
DLQ_SUBJECT = "zhike.dlq.profile-identity"
PARTY_CREATED_SUBJECT = "zhike.identity.v1.party_created"
SOURCE_RECORD_LINKED_SUBJECT = "zhike.identity.v1.source_record_linked"
RESIDENT_ID = "11010519491231002X"


def js(stack: Stack) -> Any:
    return stack.profile_service.bus.js


async def find_profile(stack: Stack, party_id: str) -> profile_pb2.Profile | None:
    response = await answer_or_none(
        stack.profile.GetProfile(
            profile_service_pb2.GetProfileRequest(party_id=party_id), timeout=2
        )
    )
    return None if response is None else response.profile


def record_keys(found: profile_pb2.Profile | None) -> set[tuple[str, str]]:
    if found is None:
        return set()
    return {(r.source_system, r.source_record_id) for r in found.source_records}


async def wait_for_records(stack: Stack, party_id: str, expected: set[tuple[str, str]]) -> None:
    async def profile_has_the_records() -> bool:
        return record_keys(await find_profile(stack, party_id)) == expected

    await eventually(profile_has_the_records, timeout=10)


async def publish(stack: Stack, subject: str, message: Message | bytes, event_type: str) -> str:
    """Publishes to JetStream exactly as the identity outbox relay does."""
    event_id = new_id()
    payload = message if isinstance(message, bytes) else message.SerializeToString()
    await js(stack).publish(
        subject,
        payload,
        headers={
            h.MSG_ID: event_id,
            h.EVENT_ID: event_id,
            h.EVENT_TYPE: event_type,
            h.CONTENT_TYPE: h.PROTOBUF,
        },
    )
    return event_id


def linked(party_id: str, system: str, record_id: str) -> events_pb2.SourceRecordLinked:
    event = events_pb2.SourceRecordLinked(
        party_id=party_id,
        source_record=party_pb2.SourceRecordKey(source_system=system, source_record_id=record_id),
    )
    event.link_time.GetCurrentTime()
    return event


async def dlq_messages(stack: Stack) -> int:
    info = await js(stack).stream_info(DLQ_STREAM)
    return int(info.state.messages)


async def test_linked_source_records_appear_in_the_profile(stack: Stack) -> None:
    identity = stack.identity

    def link(system: str, record_id: str) -> identity_service_pb2.LinkSourceRecordRequest:
        return identity_service_pb2.LinkSourceRecordRequest(
            source_record=party_pb2.SourceRecord(
                key=party_pb2.SourceRecordKey(source_system=system, source_record_id=record_id),
                id_type=party_pb2.ID_TYPE_RESIDENT_ID,
                id_number=RESIDENT_ID,
            )
        )

    first = await identity.LinkSourceRecord(link("core-banking", "CIF-1"), timeout=5)
    await wait_for_records(stack, first.party_id, {("core-banking", "CIF-1")})

    second = await identity.LinkSourceRecord(link("cards", "C-77"), timeout=5)

    assert second.party_id == first.party_id
    await wait_for_records(stack, first.party_id, {("core-banking", "CIF-1"), ("cards", "C-77")})
    found = await find_profile(stack, first.party_id)
    assert found is not None
    assert found.party_id == first.party_id
    assert found.create_time.seconds > 0


async def test_source_record_linked_before_party_created_gives_one_profile(stack: Stack) -> None:
    party_id = str(uuid.uuid4())
    await publish(
        stack,
        SOURCE_RECORD_LINKED_SUBJECT,
        linked(party_id, "crm", "1"),
        "zhike.identity.v1.SourceRecordLinked",
    )
    created = events_pb2.PartyCreated(party_id=party_id)
    created.create_time.GetCurrentTime()

    await publish(stack, PARTY_CREATED_SUBJECT, created, "zhike.identity.v1.PartyCreated")

    await wait_for_records(stack, party_id, {("crm", "1")})


async def test_malformed_events_are_dead_lettered_and_later_events_still_apply(
    stack: Stack,
) -> None:
    no_party = linked("", "crm", "orphan")
    no_party_id = await publish(
        stack, SOURCE_RECORD_LINKED_SUBJECT, no_party, "zhike.identity.v1.SourceRecordLinked"
    )
    undecodable_id = await publish(
        stack, PARTY_CREATED_SUBJECT, b"\xff\xff\xff\xff", "zhike.identity.v1.PartyCreated"
    )
    good_party = str(uuid.uuid4())

    await publish(
        stack,
        SOURCE_RECORD_LINKED_SUBJECT,
        linked(good_party, "crm", "good"),
        "zhike.identity.v1.SourceRecordLinked",
    )

    await wait_for_records(stack, good_party, {("crm", "good")})

    async def both_dead_lettered() -> bool:
        return await dlq_messages(stack) >= 2

    await eventually(both_dead_lettered, timeout=10)
    assert await dlq_messages(stack) == 2
    parked = [await js(stack).get_msg(DLQ_STREAM, seq=seq) for seq in (1, 2)]
    assert [m.subject for m in parked] == [DLQ_SUBJECT, DLQ_SUBJECT]
    by_event = {m.headers[h.EVENT_ID]: m for m in parked}
    assert set(by_event) == {no_party_id, undecodable_id}
    orphan = by_event[no_party_id]
    assert orphan.data == no_party.SerializeToString()
    assert orphan.headers[h.ORIGINAL_SUBJECT] == SOURCE_RECORD_LINKED_SUBJECT
    assert "party_id" in orphan.headers[h.LAST_ERROR]
    assert orphan.headers[h.CONSUMER] == "profile-identity"
    assert by_event[undecodable_id].headers[h.LAST_ERROR]
    # Dead-lettered, not applied: the good party's profile is the only one.
    async with stack.profile_service.database.session() as session:
        parties = (await session.scalars(sa.select(schema.profile.c.party_id))).all()
    assert parties == [good_party]


async def test_a_golden_record_with_an_impossible_birth_date_is_dead_lettered_without_it(
    stack: Stack,
) -> None:
    party_id = str(uuid.uuid4())
    changed = events_pb2.GoldenRecordChanged(
        party_id=party_id,
        golden_record=party_pb2.GoldenRecord(
            full_name=party_pb2.GoldenValue(value="刘晓燕"),
            birth_date=party_pb2.GoldenValue(value="1996-13-45"),
        ),
    )
    changed.change_time.GetCurrentTime()

    event_id = await publish(
        stack,
        "zhike.identity.v1.golden_record_changed",
        changed,
        "zhike.identity.v1.GoldenRecordChanged",
    )

    async def dead_lettered() -> bool:
        return await dlq_messages(stack) == 1

    await eventually(dead_lettered, timeout=10)
    parked = await js(stack).get_msg(DLQ_STREAM, seq=1)
    assert parked.headers[h.EVENT_ID] == event_id
    error = parked.headers[h.LAST_ERROR]
    assert "golden_record.birth_date" in error
    assert "1996" not in error
    assert "13-45" not in error
    # Dead-lettered, not applied: not even the name.
    async with stack.profile_service.database.session() as session:
        parties = (await session.scalars(sa.select(schema.profile.c.party_id))).all()
    assert parties == []


async def test_identity_events_no_later_event_could_mend_are_dead_lettered_naming_the_field(
    stack: Stack,
) -> None:
    # A change dated centuries ahead would stay the newest for good (the name would never
    # change again); a merge retiring "" would create a profile for no party.
    party_id = str(uuid.uuid4())
    ahead = events_pb2.GoldenRecordChanged(
        party_id=party_id,
        golden_record=party_pb2.GoldenRecord(full_name=party_pb2.GoldenValue(value="刘晓燕")),
    )
    ahead.change_time.FromJsonString("2205-01-01T00:00:00Z")
    merge = events_pb2.PartiesMerged(surviving_party_id=party_id, retired_party_ids=[""])
    merge.merge_time.GetCurrentTime()
    # An end of forwarding without the kept party would leave the id's records nowhere.
    ended = events_pb2.PartyForwardingEnded(party_id=str(uuid.uuid4()), forwarding_version=2)
    ended.end_time.GetCurrentTime()
    ahead_id = await publish(
        stack,
        "zhike.identity.v1.golden_record_changed",
        ahead,
        "zhike.identity.v1.GoldenRecordChanged",
    )
    merge_id = await publish(
        stack, "zhike.identity.v1.parties_merged", merge, "zhike.identity.v1.PartiesMerged"
    )
    ended_id = await publish(
        stack,
        "zhike.identity.v1.party_forwarding_ended",
        ended,
        "zhike.identity.v1.PartyForwardingEnded",
    )

    async def all_dead_lettered() -> bool:
        return await dlq_messages(stack) == 3

    await eventually(all_dead_lettered, timeout=10)
    parked = [await js(stack).get_msg(DLQ_STREAM, seq=seq) for seq in (1, 2, 3)]
    errors = {m.headers[h.EVENT_ID]: m.headers[h.LAST_ERROR] for m in parked}
    assert errors[ahead_id].startswith("PermanentEventError: GoldenRecordChanged.change_time ")
    assert errors[merge_id].startswith("PermanentEventError: PartiesMerged.retired_party_ids[0] ")
    assert errors[ended_id].startswith("PermanentEventError: PartyForwardingEnded.kept_party_id ")
    async with stack.profile_service.database.session() as session:
        parties = (await session.scalars(sa.select(schema.profile.c.party_id))).all()
    assert parties == []
