"""The profile follows identity's merges, splits and moves: both services in-process on one real
nats-server, driven through identity's gRPC API and read through the profile's."""

from __future__ import annotations

from typing import Any

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import profile_pb2, profile_service_pb2
from zhike_runtime.testing.services import answer_or_none, eventually

from .identity_and_profile import Stack

RESIDENT_ID = "440306198505120028"  # born 1985-05-12, female
A_RECORDS = {("core", "A-1"), ("mobile", "A-2")}
B_RECORDS = {("cards", "B-1"), ("loans", "B-2")}


async def link(stack: Stack, source_system: str, source_record_id: str, **values: Any) -> str:
    response = await stack.identity.LinkSourceRecord(
        pb.LinkSourceRecordRequest(
            source_record=party_pb2.SourceRecord(
                key=party_pb2.SourceRecordKey(
                    source_system=source_system, source_record_id=source_record_id
                ),
                **values,
            )
        ),
        timeout=5,
    )
    return str(response.party_id)


async def person_a(stack: Stack) -> str:
    party_id = await link(
        stack,
        "core",
        "A-1",
        full_name="刘晓燕",
        id_type=party_pb2.ID_TYPE_RESIDENT_ID,
        id_number=RESIDENT_ID,
        phone="13671829305",
        email="xiaoyan.liu@163.com",
    )
    assert (
        await link(
            stack,
            "mobile",
            "A-2",
            full_name="刘小燕",
            phone="13671829305",
            email="xiaoyan.liu@163.com",
        )
        == party_id
    )
    return party_id


async def person_b(stack: Stack) -> str:
    values: dict[str, Any] = {
        "full_name": "王伟",
        "phone": "13912345670",
        "email": "wang.wei@qq.com",
    }
    party_id = await link(stack, "cards", "B-1", **values)
    assert await link(stack, "loans", "B-2", **values) == party_id
    return party_id


async def find_profile(stack: Stack, party_id: str) -> profile_pb2.Profile | None:
    response = await answer_or_none(
        stack.profile.GetProfile(
            profile_service_pb2.GetProfileRequest(party_id=party_id), timeout=2
        )
    )
    return None if response is None else response.profile


def keys(found: profile_pb2.Profile | None) -> set[tuple[str, str]]:
    if found is None:
        return set()
    return {(r.source_system, r.source_record_id) for r in found.source_records}


async def wait_for(
    stack: Stack,
    party_id: str,
    records: set[tuple[str, str]],
    *,
    answered_by: str | None = None,
    display_name: str | None = None,
) -> profile_pb2.Profile:
    """Waits until GetProfile(party_id) answers with the profile of `answered_by` (by default
    party_id itself) holding exactly `records` (and the display name, if given)."""
    expected_id = answered_by or party_id
    last: list[profile_pb2.Profile | None] = [None]

    async def profile_followed() -> bool:
        found = last[0] = await find_profile(stack, party_id)
        return (
            found is not None
            and found.party_id == expected_id
            and keys(found) == records
            and (display_name is None or found.display_name == display_name)
        )

    try:
        await eventually(profile_followed, timeout=10)
    except AssertionError as error:
        raise AssertionError(f"GetProfile({party_id}) still answers {last[0]}") from error
    assert last[0] is not None
    return last[0]


async def test_merged_profiles_combine_and_the_retired_id_answers_with_the_survivor(
    stack: Stack,
) -> None:
    first = await person_a(stack)
    second = await person_b(stack)
    await wait_for(stack, first, A_RECORDS)
    await wait_for(stack, second, B_RECORDS)

    merged = await stack.identity.MergeParties(
        pb.MergePartiesRequest(party_ids=[first, second]), timeout=5
    )

    survivor = merged.surviving_party_id
    retired = second if survivor == first else first
    await wait_for(stack, survivor, A_RECORDS | B_RECORDS)
    await wait_for(stack, retired, A_RECORDS | B_RECORDS, answered_by=survivor)


async def test_a_split_divides_the_profile_by_source_record(stack: Stack) -> None:
    first = await person_a(stack)
    second = await person_b(stack)
    merged = await stack.identity.MergeParties(
        pb.MergePartiesRequest(party_ids=[first, second]), timeout=5
    )
    assert merged.surviving_party_id == first
    await wait_for(stack, first, A_RECORDS | B_RECORDS)

    split = await stack.identity.SplitParty(
        pb.SplitPartyRequest(
            party_id=first,
            source_records=[
                party_pb2.SourceRecordKey(source_system=s, source_record_id=r)
                for s, r in sorted(B_RECORDS)
            ],
            reason="two customers",
        ),
        timeout=5,
    )

    await wait_for(stack, split.new_party_id, B_RECORDS, display_name="王伟")
    await wait_for(stack, first, A_RECORDS, display_name="刘晓燕")


def record_keys(*pairs: tuple[str, str]) -> list[party_pb2.SourceRecordKey]:
    return [party_pb2.SourceRecordKey(source_system=s, source_record_id=r) for s, r in pairs]


async def merged_then_split(
    stack: Stack, *leaving: tuple[str, str]
) -> tuple[str, str, pb.SplitPartyResponse]:
    """Wang Wei's party merged into Liu Xiaoyan's (as the profile shows), then the `leaving`
    records split off: (her party, his retired one, the split's answer)."""
    first = await person_a(stack)
    second = await person_b(stack)
    await stack.identity.MergeParties(pb.MergePartiesRequest(party_ids=[first, second]), timeout=5)
    await wait_for(stack, second, A_RECORDS | B_RECORDS, answered_by=first)
    split = await stack.identity.SplitParty(
        pb.SplitPartyRequest(
            party_id=first, source_records=record_keys(*leaving), reason="two people"
        ),
        timeout=5,
    )
    return first, second, split


async def test_after_a_split_the_retired_id_answers_with_the_party_its_records_went_to(
    stack: Stack,
) -> None:
    _, second, split = await merged_then_split(stack, *sorted(B_RECORDS))

    # Wang Wei's old id no longer shows Liu Xiaoyan's profile: it follows his records.
    await wait_for(stack, second, B_RECORDS, answered_by=split.new_party_id)


async def test_after_a_split_parts_its_records_the_retired_id_is_not_found(stack: Stack) -> None:
    first, second, split = await merged_then_split(stack, ("cards", "B-1"))

    await wait_for(stack, split.new_party_id, {("cards", "B-1")})

    async def not_found() -> bool:
        return await find_profile(stack, second) is None

    await eventually(not_found, timeout=10)
    await wait_for(stack, first, A_RECORDS | {("loans", "B-2")})


async def test_a_record_moved_by_an_update_moves_in_the_profile(stack: Stack) -> None:
    first = await person_a(stack)
    await wait_for(stack, first, A_RECORDS)

    # Mobile banking corrects A-2: it belongs to another customer.
    moved_to = await link(
        stack, "mobile", "A-2", full_name="周杰", phone="13511112222", email="zhou.jie@qq.com"
    )

    assert moved_to != first
    await wait_for(stack, moved_to, {("mobile", "A-2")}, display_name="周杰")
    await wait_for(stack, first, {("core", "A-1")}, display_name="刘晓燕")


async def test_a_party_emptied_by_a_move_forwards_in_the_profile_as_at_identity(
    stack: Stack,
) -> None:
    first = await person_a(stack)
    alone = await link(
        stack, "crm", "X-1", full_name="周杰", phone="13511112222", email="zhou.jie@qq.com"
    )
    await wait_for(stack, alone, {("crm", "X-1")})

    # The CRM corrects X-1 to customer A's details: it joins A's party and its own party empties.
    assert (
        await link(
            stack,
            "crm",
            "X-1",
            full_name="刘小燕",
            phone="13671829305",
            email="xiaoyan.liu@163.com",
        )
        == first
    )
    at_identity = await stack.identity.GetParty(pb.GetPartyRequest(party_id=alone), timeout=5)
    assert at_identity.party.party_id == first

    await wait_for(stack, first, A_RECORDS | {("crm", "X-1")})
    await wait_for(stack, alone, A_RECORDS | {("crm", "X-1")}, answered_by=first)


async def test_display_name_follows_the_golden_record(stack: Stack) -> None:
    party_id = await link(
        stack,
        "call_centre",
        "G-1",
        full_name="刘小燕",
        phone="13671829305",
        email="xiaoyan.liu@163.com",
    )
    await wait_for(stack, party_id, {("call_centre", "G-1")}, display_name="刘小燕")

    # The verified core record arrives later: its name wins over the call centre's spelling.
    assert (
        await link(
            stack,
            "core",
            "G-2",
            full_name="刘晓燕",
            id_type=party_pb2.ID_TYPE_RESIDENT_ID,
            id_number=RESIDENT_ID,
            phone="13671829305",
            email="xiaoyan.liu@163.com",
        )
        == party_id
    )

    await wait_for(
        stack, party_id, {("call_centre", "G-1"), ("core", "G-2")}, display_name="刘晓燕"
    )
