"""The steward and lookup RPCs in-process: a real grpc.aio server, a real nats-server, SQLite."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from google.type import date_pb2

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc, party_pb2
from zhike_identity.app import DEFINITION
from zhike_identity.domain.matching.model import default_model
from zhike_identity.settings import IdentitySettings
from zhike_identity.storage import schema
from zhike_runtime import grpc_errors
from zhike_runtime.app import RunningService
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    running_service,
    wait_serving,
)

if TYPE_CHECKING:
    from zhike.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub as Stub

STREAM = "ZHIKE_IDENTITY"
MODEL = default_model()
RESIDENT_ID = "440306198505120028"  # born 1985-05-12, female
TABLES = (
    schema.party,
    schema.source_record,
    schema.blocking_key,
    schema.link_decision,
    schema.link_review,
    schema.party_history,
    outbox_event,
)

Identity = RunningService[IdentitySettings]


@pytest.fixture
async def identity(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Identity]:
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        yield service


STEWARD = "steward-li"


@pytest.fixture
async def stub(identity: Identity) -> AsyncIterator[Stub]:
    async with authorised_channel(f"127.0.0.1:{identity.grpc_port}", subject=STEWARD) as channel:
        yield cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))


def key(source_system: str, source_record_id: str) -> party_pb2.SourceRecordKey:
    return party_pb2.SourceRecordKey(source_system=source_system, source_record_id=source_record_id)


def as_tuple(k: party_pb2.SourceRecordKey) -> tuple[str, str]:
    return (k.source_system, k.source_record_id)


async def link(stub: Stub, source_system: str, source_record_id: str, **values: Any) -> str:
    response = await stub.LinkSourceRecord(
        pb.LinkSourceRecordRequest(
            source_record=party_pb2.SourceRecord(key=key(source_system, source_record_id), **values)
        ),
        timeout=5,
    )
    return str(response.party_id)


async def person_a(stub: Stub) -> str:
    """Two records of one customer: a verified core record and a mobile-banking one."""
    party_id = await link(
        stub,
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
            stub,
            "mobile",
            "A-2",
            full_name="刘小燕",
            phone="+86 136-7182-9305",
            email="XIAOYAN.LIU@163.COM",
        )
        == party_id
    )
    return party_id


async def person_b(stub: Stub) -> str:
    party_id = await link(
        stub, "cards", "B-1", full_name="王伟", phone="13912345670", email="wang.wei@qq.com"
    )
    assert (
        await link(
            stub, "loans", "B-2", full_name="王伟", phone="13912345670", email="wang.wei@qq.com"
        )
        == party_id
    )
    return party_id


async def rpc_error(call: Awaitable[Any]) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def rich_status(error: Any) -> status_pb2.Status:
    status = grpc_errors.rich_status(error)
    assert status is not None, f"no rich status in the trailers of {error.code()}"
    return status


def violated_fields(error: Any) -> list[str]:
    for detail in rich_status(error).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            return [v.field for v in bad_request.field_violations]
    raise AssertionError("no google.rpc.BadRequest in the status details")


async def row_counts(service: Identity) -> dict[str, int]:
    async with service.database.session() as session:
        return {
            table.name: int(
                await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            )
            for table in TABLES
        }


async def stream_messages(service: Identity) -> int:
    info = await service.bus.js.stream_info(STREAM)
    return int(info.state.messages)


async def all_published(service: Identity) -> None:
    async def outbox_drained() -> bool:
        return await stream_messages(service) == (await row_counts(service))["outbox_event"]

    await eventually(outbox_drained, timeout=10)


def call(stub: Stub, method: str, request: Message) -> Awaitable[Any]:
    return cast("Awaitable[Any]", getattr(stub, method)(request, timeout=5))


# --- every RPC end to end -------------------------------------------------------------------


async def test_get_party_shows_evidence_and_a_masked_golden_record(
    identity: Identity, stub: Stub
) -> None:
    party_id = await person_a(stub)

    async with authorised_channel(
        f"127.0.0.1:{identity.grpc_port}", roles=["call_centre_agent"]
    ) as channel:
        agent = cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))
        party = (await agent.GetParty(pb.GetPartyRequest(party_id=party_id), timeout=5)).party

    assert party.party_id == party_id
    assert party.create_time.seconds > 0
    records = {as_tuple(r.key): r.evidence for r in party.source_records}
    assert set(records) == {("core", "A-1"), ("mobile", "A-2")}
    joined = records[("mobile", "A-2")]
    assert joined.decided_by == party_pb2.DECIDER_MODEL
    assert as_tuple(joined.matched_record) == ("core", "A-1")
    assert joined.match_weight >= MODEL.link_weight
    assert joined.model_version == MODEL.version
    assert joined.decide_time.seconds > 0
    founder = records[("core", "A-1")]
    assert not founder.HasField("matched_record")
    golden = party.golden_record
    assert (golden.full_name.value, as_tuple(golden.full_name.source)) == (
        "刘晓燕",
        ("core", "A-1"),
    )
    assert golden.birth_date.value == "1985-05-12"
    assert golden.gender.value == "FEMALE"
    assert golden.id_number.value == "440*************28"
    assert [p.value for p in golden.phones] == ["+86136****9305"]
    assert [e.value for e in golden.emails] == ["x***@163.com"]
    assert RESIDENT_ID not in str(party)
    assert "13671829305" not in str(party)
    # A masked read is not an access to personal data: nothing to audit.
    assert await identity.audit.read() == []


async def test_a_caller_with_read_pii_sees_the_golden_record_unmasked_and_is_audited(
    identity: Identity, stub: Stub
) -> None:
    party_id = await person_a(stub)

    async with authorised_channel(
        f"127.0.0.1:{identity.grpc_port}", roles=["branch_teller"], subject="teller-0042"
    ) as channel:
        teller = cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))
        party = (
            await teller.GetParty(
                pb.GetPartyRequest(party_id=party_id),
                metadata=(("x-zhike-purpose", "account opening"),),
                timeout=5,
            )
        ).party

    golden = party.golden_record
    assert golden.id_number.value == RESIDENT_ID
    assert [p.value for p in golden.phones] == ["+8613671829305"]
    assert [e.value for e in golden.emails] == ["xiaoyan.liu@163.com"]
    [entry] = await identity.audit.read()
    assert (entry.actor, entry.roles, entry.method, entry.party_id, entry.purpose) == (
        "teller-0042",
        ("branch_teller",),
        "/zhike.identity.v1.IdentityService/GetParty",
        party_id,
        "account opening",
    )
    assert entry.fields == ("id_number", "phones", "emails", "address")


async def test_every_one_of_200_unmasked_reads_leaves_its_own_audit_record(
    identity: Identity, stub: Stub
) -> None:
    party_id = await person_a(stub)
    async with authorised_channel(
        f"127.0.0.1:{identity.grpc_port}", roles=["data_steward"], subject="steward-zhao"
    ) as channel:
        steward = cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))
        for _ in range(200):
            await steward.GetParty(pb.GetPartyRequest(party_id=party_id), timeout=5)
    records = await identity.audit.read(actor="steward-zhao")
    assert len(records) == 200
    assert {(r.party_id, r.outcome) for r in records} == {(party_id, "OK")}


async def test_find_parties_by_each_criterion_audits_searches_by_personal_data(
    identity: Identity, stub: Stub
) -> None:
    party_id = await person_a(stub)
    await person_b(stub)

    requests = [
        pb.FindPartiesRequest(source_record=key("mobile", "A-2")),
        pb.FindPartiesRequest(
            id_number=pb.IdNumberQuery(
                id_type=party_pb2.ID_TYPE_RESIDENT_ID, id_number=RESIDENT_ID.lower()
            )
        ),
        pb.FindPartiesRequest(id_number=pb.IdNumberQuery(id_number="440306850512002")),
        pb.FindPartiesRequest(phone="+86 136-7182-9305"),
        pb.FindPartiesRequest(email="XiaoYan.Liu@163.com"),
        pb.FindPartiesRequest(
            name_and_birth_date=pb.NameAndBirthDate(
                full_name="刘晓燕", birth_date=date_pb2.Date(year=1985, month=5, day=12)
            )
        ),
    ]
    for request in requests:
        found = await stub.FindParties(request, timeout=5)
        assert list(found.party_ids) == [party_id], request

    nothing = await stub.FindParties(pb.FindPartiesRequest(phone="13755556666"), timeout=5)
    assert list(nothing.party_ids) == []
    # Every search but the one by source key, found or not, by whom and on what.
    audited = await identity.audit.read()
    assert [(e.actor, e.fields, e.outcome) for e in audited] == [
        (STEWARD, ("id_number",), "OK"),
        (STEWARD, ("id_number",), "OK"),
        (STEWARD, ("phone",), "OK"),
        (STEWARD, ("email",), "OK"),
        (STEWARD, ("name_and_birth_date",), "OK"),
        (STEWARD, ("phone",), "OK"),
    ]


async def test_explain_link_over_grpc_is_masked_and_adds_up(stub: Stub) -> None:
    await person_a(stub)
    await person_b(stub)

    match = await stub.ExplainLink(
        pb.ExplainLinkRequest(record_a=key("core", "A-1"), record_b=key("mobile", "A-2")),
        timeout=5,
    )
    apart = await stub.ExplainLink(
        pb.ExplainLinkRequest(record_a=key("core", "A-1"), record_b=key("cards", "B-1")),
        timeout=5,
    )

    assert (match.decision, match.same_party_now) == ("link", True)
    assert (apart.decision, apart.same_party_now) == ("no_link", False)
    for explanation in (match, apart):
        assert [f.field for f in explanation.fields] == [
            "id",
            "name",
            "birth_date",
            "gender",
            "phone",
            "email",
            "address",
        ]
        assert explanation.total_weight == pytest.approx(
            explanation.prior_weight + sum(f.weight for f in explanation.fields)
        )
        assert explanation.link_threshold == MODEL.link_weight
        assert explanation.review_threshold == MODEL.review_weight
        assert explanation.model_version == MODEL.version
        for value in [v for f in explanation.fields for v in (f.value_a, f.value_b)]:
            assert not re.search(r"\d{17}[\dX]", value)
            assert not re.search(r"1[3-9]\d{9}", value)
            assert "xiaoyan.liu" not in value


async def test_the_customers_own_app_is_not_told_which_steward_linked_his_records(
    identity: Identity, stub: Stub
) -> None:
    party_id = await person_a(stub)
    split = await stub.SplitParty(
        pb.SplitPartyRequest(party_id=party_id, source_records=[key("mobile", "A-2")]),
        timeout=5,
    )
    moved = split.new_party_id

    async with authorised_channel(
        f"127.0.0.1:{identity.grpc_port}", roles=["channel_app"], party_id=moved
    ) as channel:
        app = cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))
        seen = (await app.GetParty(pb.GetPartyRequest(party_id=moved), timeout=5)).party
    staff = (await stub.GetParty(pb.GetPartyRequest(party_id=moved), timeout=5)).party

    assert [(r.evidence.decided_by, r.evidence.steward) for r in staff.source_records] == [
        (party_pb2.DECIDER_STEWARD, STEWARD)
    ]
    assert [(r.evidence.decided_by, r.evidence.steward) for r in seen.source_records] == [
        (party_pb2.DECIDER_STEWARD, "")
    ]


async def test_explain_link_masks_the_address_as_get_party_does(stub: Stub) -> None:
    street = "北京市朝阳区建国路88号SOHO现代城5号楼1203室"
    for source, record_id in (("core", "C-1"), ("mobile", "C-2")):
        await link(stub, source, record_id, full_name="赵敏", phone="13800138000", address=street)

    explained = await stub.ExplainLink(
        pb.ExplainLinkRequest(record_a=key("core", "C-1"), record_b=key("mobile", "C-2")),
        timeout=5,
    )

    [address] = [f for f in explained.fields if f.field == "address"]
    for shown in (address.value_a, address.value_b):
        assert shown.endswith("****")
        assert "88号" not in shown
        assert "1203" not in shown


async def test_after_a_merge_and_a_split_the_retired_ids_customer_token_finds_no_party(
    identity: Identity, stub: Stub
) -> None:
    # Wang Wei's party is merged into Liu Xiaoyan's by mistake, then split out again: his
    # retired id still forwards to her party. His app, holding that id, must not see her.
    first = await person_a(stub)
    second = await person_b(stub)
    await stub.MergeParties(pb.MergePartiesRequest(party_ids=[second, first], reason="same"))
    await stub.SplitParty(
        pb.SplitPartyRequest(
            party_id=first,
            source_records=[key("cards", "B-1"), key("loans", "B-2")],
            reason="two customers",
        ),
        timeout=5,
    )

    async with authorised_channel(
        f"127.0.0.1:{identity.grpc_port}", roles=["channel_app"], party_id=second
    ) as channel:
        app = cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await app.GetParty(pb.GetPartyRequest(party_id=second), timeout=5)

    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        f"party '{second}' not found",
    )


async def merged_by_mistake(stub: Stub) -> tuple[str, str]:
    """Liu Xiaoyan's party (A-1, A-2) absorbs Wang Wei's (B-1, B-2): (kept, retired)."""
    first = await person_a(stub)
    second = await person_b(stub)
    await stub.MergeParties(pb.MergePartiesRequest(party_ids=[second, first], reason="same"))
    return first, second


async def split(stub: Stub, party_id: str, *keys: party_pb2.SourceRecordKey) -> str:
    answer = await stub.SplitParty(
        pb.SplitPartyRequest(party_id=party_id, source_records=list(keys), reason="two people"),
        timeout=5,
    )
    return str(answer.new_party_id)


async def test_a_retired_id_whose_records_all_leave_in_a_split_leads_to_the_new_party(
    stub: Stub,
) -> None:
    first, second = await merged_by_mistake(stub)

    new_party = await split(stub, first, key("cards", "B-1"), key("loans", "B-2"))

    forwarded = (await stub.GetParty(pb.GetPartyRequest(party_id=second), timeout=5)).party
    assert forwarded.party_id == new_party
    assert {as_tuple(r.key) for r in forwarded.source_records} == {
        ("cards", "B-1"),
        ("loans", "B-2"),
    }


async def test_a_retired_id_whose_records_a_split_parts_leads_nowhere(stub: Stub) -> None:
    first, second = await merged_by_mistake(stub)

    await split(stub, first, key("cards", "B-1"))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetParty(pb.GetPartyRequest(party_id=second), timeout=5)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_retired_id_whose_records_stay_in_a_split_still_leads_to_its_survivor(
    stub: Stub,
) -> None:
    first, second = await merged_by_mistake(stub)

    await split(stub, first, key("mobile", "A-2"))

    forwarded = (await stub.GetParty(pb.GetPartyRequest(party_id=second), timeout=5)).party
    assert forwarded.party_id == first


async def test_a_split_leads_every_retired_id_of_a_chain_of_merges_straight_to_its_records(
    stub: Stub,
) -> None:
    first = await person_a(stub)
    second = await person_b(stub)
    third = await link(stub, "branch", "C-1", full_name="张敏", phone="13700000001")
    await stub.MergeParties(pb.MergePartiesRequest(party_ids=[third, second], reason="same"))
    await stub.MergeParties(pb.MergePartiesRequest(party_ids=[second, first], reason="same"))

    # Only the third customer's record leaves: the second retired id held it with others.
    new_party = await split(stub, first, key("branch", "C-1"))

    third_leads_to = (await stub.GetParty(pb.GetPartyRequest(party_id=third), timeout=5)).party
    assert third_leads_to.party_id == new_party
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetParty(pb.GetPartyRequest(party_id=second), timeout=5)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def test_merge_split_and_history_over_grpc(identity: Identity, stub: Stub) -> None:
    first = await person_a(stub)
    second = await person_b(stub)

    merged = await stub.MergeParties(
        pb.MergePartiesRequest(party_ids=[second, first], reason="same"),
        timeout=5,
    )
    assert merged.surviving_party_id == first
    forwarded = await stub.GetParty(pb.GetPartyRequest(party_id=second), timeout=5)
    assert forwarded.party.party_id == first
    assert len(forwarded.party.source_records) == 4

    split = await stub.SplitParty(
        pb.SplitPartyRequest(
            party_id=first,
            source_records=[key("cards", "B-1"), key("loans", "B-2")],
            reason="two customers",
        ),
        timeout=5,
    )

    new_party = split.new_party_id
    assert str(uuid.UUID(new_party)) == new_party
    kept = (await stub.GetParty(pb.GetPartyRequest(party_id=first), timeout=5)).party
    gone = (await stub.GetParty(pb.GetPartyRequest(party_id=new_party), timeout=5)).party
    assert {as_tuple(r.key) for r in kept.source_records} == {("core", "A-1"), ("mobile", "A-2")}
    assert {as_tuple(r.key) for r in gone.source_records} == {("cards", "B-1"), ("loans", "B-2")}
    assert all(r.evidence.decided_by == party_pb2.DECIDER_STEWARD for r in gone.source_records)
    assert all(r.evidence.steward == STEWARD for r in gone.source_records)
    history = (
        await stub.GetPartyHistory(pb.GetPartyHistoryRequest(party_id=first), timeout=5)
    ).entries
    changes = [e.change for e in history]
    assert changes[0] == pb.PARTY_CHANGE_CREATED
    assert changes.index(pb.PARTY_CHANGE_ABSORBED) < changes.index(pb.PARTY_CHANGE_SPLIT)
    absorbed = history[changes.index(pb.PARTY_CHANGE_ABSORBED)]
    assert (absorbed.decided_by, absorbed.steward, absorbed.reason) == (
        party_pb2.DECIDER_STEWARD,
        STEWARD,
        "same",
    )
    assert absorbed.other_party_id == second
    split_entry = history[changes.index(pb.PARTY_CHANGE_SPLIT)]
    assert split_entry.other_party_id == new_party
    assert {as_tuple(k) for k in split_entry.source_records} == {("cards", "B-1"), ("loans", "B-2")}
    retired = (
        await stub.GetPartyHistory(pb.GetPartyHistoryRequest(party_id=second), timeout=5)
    ).entries
    assert [e.change for e in retired][-1] == pb.PARTY_CHANGE_MERGED_INTO
    await all_published(identity)


async def test_reviews_are_paged_and_resolved_over_grpc(stub: Stub) -> None:
    pairs = []
    for i, name in enumerate(("李明华", "张伟国")):
        values: dict[str, Any] = {
            "full_name": name,
            "birth_date": date_pb2.Date(year=1985, month=3, day=12 + i),
            "gender": party_pb2.GENDER_MALE,
        }
        left = await link(stub, "crm", f"R-{i}", **values)
        right = await link(stub, "loans", f"R-{i}", **values)
        assert left != right
        pairs.append({left, right})

    first = await stub.ListLinkReviews(pb.ListLinkReviewsRequest(page_size=1), timeout=5)
    assert len(first.reviews) == 1
    assert first.next_page_token
    second = await stub.ListLinkReviews(
        pb.ListLinkReviewsRequest(page_size=1, page_token=first.next_page_token), timeout=5
    )
    assert len(second.reviews) == 1
    assert second.next_page_token == ""
    reviews = [*first.reviews, *second.reviews]
    assert [{r.party_a, r.party_b} for r in reviews] == pairs
    assert all(MODEL.review_weight <= r.match_weight < MODEL.link_weight for r in reviews)

    resolved = await stub.ResolveLinkReview(
        pb.ResolveLinkReviewRequest(
            review_id=reviews[0].review_id,
            outcome=pb.REVIEW_OUTCOME_LINK,
        ),
        timeout=5,
    )
    assert resolved.party_id_a == resolved.party_id_b
    kept_apart = await stub.ResolveLinkReview(
        pb.ResolveLinkReviewRequest(
            review_id=reviews[1].review_id,
            outcome=pb.REVIEW_OUTCOME_KEEP_APART,
        ),
        timeout=5,
    )
    assert kept_apart.party_id_a != kept_apart.party_id_b
    left = await stub.ListLinkReviews(pb.ListLinkReviewsRequest(), timeout=5)
    assert list(left.reviews) == []
    again = await rpc_error(
        stub.ResolveLinkReview(
            pb.ResolveLinkReviewRequest(
                review_id=reviews[0].review_id,
                outcome=pb.REVIEW_OUTCOME_LINK,
            ),
            timeout=5,
        )
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_record_link_decision_over_grpc(stub: Stub) -> None:
    first = await person_a(stub)
    second = await person_b(stub)

    never = await stub.RecordLinkDecision(
        pb.RecordLinkDecisionRequest(
            record_a=key("core", "A-1"),
            record_b=key("cards", "B-1"),
            decision=pb.LINK_DECISION_NEVER_LINK,
            reason="different people",
        ),
        timeout=5,
    )
    assert (never.party_id_a, never.party_id_b) == (first, second)
    explained = await stub.ExplainLink(
        pb.ExplainLinkRequest(record_a=key("cards", "B-1"), record_b=key("core", "A-1")),
        timeout=5,
    )
    assert explained.guardrail == "steward_never_link"

    # Linking other records of the two parties would join A-1 and B-1: the "never link" holds.
    contradiction = await rpc_error(
        stub.RecordLinkDecision(
            pb.RecordLinkDecisionRequest(
                record_a=key("mobile", "A-2"),
                record_b=key("loans", "B-2"),
                decision=pb.LINK_DECISION_ALWAYS_LINK,
            ),
            timeout=5,
        )
    )
    assert contradiction.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "never-link" in (contradiction.details() or "")

    # An "always link" for the very pair replaces the "never link" and merges the parties.
    always = await stub.RecordLinkDecision(
        pb.RecordLinkDecisionRequest(
            record_a=key("core", "A-1"),
            record_b=key("cards", "B-1"),
            decision=pb.LINK_DECISION_ALWAYS_LINK,
            reason="one customer after all: ID cards checked",
        ),
        timeout=5,
    )
    assert (always.party_id_a, always.party_id_b) == (first, first)
    forwarded = await stub.GetParty(pb.GetPartyRequest(party_id=second), timeout=5)
    assert forwarded.party.party_id == first


# --- bad input ------------------------------------------------------------------------------


def bad_requests(a: str, b: str) -> list[tuple[str, str, Message, list[str]]]:
    """(label, method, request, fields the answer must name); a and b are real party ids."""
    merge = pb.MergePartiesRequest
    split = pb.SplitPartyRequest
    decide = pb.RecordLinkDecisionRequest
    resolve = pb.ResolveLinkReviewRequest
    ok_key = key("core", "A-1")
    cases: list[tuple[str, str, Message, list[str]]] = [
        ("non-UUID party", "GetParty", pb.GetPartyRequest(party_id="a.b.>"), ["party_id"]),
        ("empty party", "GetParty", pb.GetPartyRequest(), ["party_id"]),
        (
            "non-UUID history",
            "GetPartyHistory",
            pb.GetPartyHistoryRequest(party_id="' OR 1=1 --"),
            ["party_id"],
        ),
        (
            "non-UUID in merge",
            "MergeParties",
            merge(party_ids=[a, "../etc"]),
            ["party_ids[1]"],
        ),
        ("one party to merge", "MergeParties", merge(party_ids=[a]), ["party_ids"]),
        (
            "the same party twice",
            "MergeParties",
            merge(party_ids=[a, a]),
            ["party_ids"],
        ),
        (
            "51 parties",
            "MergeParties",
            merge(party_ids=[a, b] + [str(uuid.uuid4()) for _ in range(49)]),
            ["party_ids"],
        ),
        (
            "100 KB reason",
            "MergeParties",
            merge(party_ids=[a, b], reason="x" * 100 * 1024),
            ["reason"],
        ),
        (
            "non-UUID split",
            "SplitParty",
            split(party_id="x", source_records=[ok_key]),
            ["party_id"],
        ),
        ("nothing to split off", "SplitParty", split(party_id=a), ["source_records"]),
        *[
            (
                f"split key with {bad!r}",
                "SplitParty",
                split(party_id=a, source_records=[key(f"core{bad}", "A-1")]),
                ["source_records[0].source_system"],
            )
            for bad in (".x", "*", ">", " ")
        ],
        (
            "empty split key",
            "SplitParty",
            split(party_id=a, source_records=[party_pb2.SourceRecordKey()]),
            ["source_records[0].source_system", "source_records[0].source_record_id"],
        ),
        (
            "decision 9",
            "RecordLinkDecision",
            decide(
                record_a=ok_key,
                record_b=key("mobile", "A-2"),
                decision=cast("pb.LinkDecision.ValueType", 9),
            ),
            ["decision"],
        ),
        (
            "decision unspecified",
            "RecordLinkDecision",
            decide(record_a=ok_key, record_b=key("mobile", "A-2")),
            ["decision"],
        ),
        (
            "decision on wildcard keys",
            "RecordLinkDecision",
            decide(
                record_a=key(">", "A-1"),
                record_b=key("mobile", ""),
                decision=pb.LINK_DECISION_NEVER_LINK,
            ),
            ["record_a.source_system", "record_b.source_record_id"],
        ),
        (
            "no decision, on wildcard keys",
            "RecordLinkDecision",
            decide(record_a=key(">", "A-1"), record_b=key("mobile", "")),
            ["decision", "record_a.source_system", "record_b.source_record_id"],
        ),
        (
            "decision on one record",
            "RecordLinkDecision",
            decide(record_a=ok_key, record_b=ok_key, decision=pb.LINK_DECISION_NEVER_LINK),
            ["record_b"],
        ),
        (
            "outcome 9",
            "ResolveLinkReview",
            resolve(
                review_id=str(uuid.uuid4()),
                outcome=cast("pb.ReviewOutcome.ValueType", 9),
            ),
            ["outcome"],
        ),
        (
            "outcome unspecified",
            "ResolveLinkReview",
            resolve(review_id=str(uuid.uuid4())),
            ["outcome"],
        ),
        (
            "outcome 9 of a non-UUID review",
            "ResolveLinkReview",
            resolve(review_id="r.1", outcome=cast("pb.ReviewOutcome.ValueType", 9)),
            ["review_id", "outcome"],
        ),
        (
            "non-UUID review",
            "ResolveLinkReview",
            resolve(review_id="r.1", outcome=pb.REVIEW_OUTCOME_LINK),
            ["review_id"],
        ),
        ("page_size -1", "ListLinkReviews", pb.ListLinkReviewsRequest(page_size=-1), ["page_size"]),
        (
            "garbage page token",
            "ListLinkReviews",
            pb.ListLinkReviewsRequest(page_token="garbage"),
            ["page_token"],
        ),
        ("no criterion", "FindParties", pb.FindPartiesRequest(), ["by"]),
        (
            "id_type 99",
            "FindParties",
            pb.FindPartiesRequest(
                id_number=pb.IdNumberQuery(
                    id_type=cast("party_pb2.IdType.ValueType", 99), id_number="E1234567"
                )
            ),
            ["id_number.id_type"],
        ),
        (
            "empty id number",
            "FindParties",
            pb.FindPartiesRequest(id_number=pb.IdNumberQuery()),
            ["id_number.id_number"],
        ),
        ("letters for a phone", "FindParties", pb.FindPartiesRequest(phone="call me"), ["phone"]),
        ("not an e-mail", "FindParties", pb.FindPartiesRequest(email="nobody"), ["email"]),
        (
            "name without birth date",
            "FindParties",
            pb.FindPartiesRequest(name_and_birth_date=pb.NameAndBirthDate(full_name="刘晓燕")),
            ["name_and_birth_date.birth_date"],
        ),
        (
            "February 30",
            "FindParties",
            pb.FindPartiesRequest(
                name_and_birth_date=pb.NameAndBirthDate(
                    full_name="刘晓燕", birth_date=date_pb2.Date(year=1985, month=2, day=30)
                )
            ),
            ["name_and_birth_date.birth_date"],
        ),
        (
            "source key with '*'",
            "FindParties",
            pb.FindPartiesRequest(source_record=key("*", "A-1")),
            ["source_record.source_system"],
        ),
        (
            "explain empty keys",
            "ExplainLink",
            pb.ExplainLinkRequest(record_b=key("core.>", "A-1")),
            [
                "record_a.source_system",
                "record_a.source_record_id",
                "record_b.source_system",
            ],
        ),
    ]
    return cases


async def test_bad_input_to_every_rpc_names_the_field_and_leaves_no_trace(
    identity: Identity, stub: Stub
) -> None:
    a = await person_a(stub)
    b = await person_b(stub)
    await all_published(identity)
    before = await row_counts(identity)
    published = await stream_messages(identity)

    wrong = []
    methods = set()
    for label, method, request, fields in bad_requests(a, b):
        methods.add(method)
        error = await rpc_error(call(stub, method, request))
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            wrong.append(f"{label}: {error.code()} {error.details()}")
        elif violated_fields(error) != fields:
            wrong.append(f"{label}: named {violated_fields(error)}, expected {fields}")

    assert not wrong, "\n".join(wrong)
    assert methods == set(pb.DESCRIPTOR.services_by_name["IdentityService"].methods_by_name) - {
        "LinkSourceRecord"
    }
    assert await row_counts(identity) == before
    assert await stream_messages(identity) == published
    assert (await stub.GetParty(pb.GetPartyRequest(party_id=b), timeout=5)).party.party_id == b


@pytest.mark.parametrize(
    "token",
    ["2000-01-01T00:00:00|forged", "2026-01-01", "9999-12-31T23:59:59+14:00|x"],
)
async def test_a_forged_page_token_is_refused(stub: Stub, token: str) -> None:
    # RELIABILITY.md: tokens are opaque and signed, so one the service did not issue is refused.
    error = await rpc_error(
        stub.ListLinkReviews(pb.ListLinkReviewsRequest(page_token=token), timeout=5)
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["page_token"]


async def test_unknown_parties_records_and_reviews_are_not_found(
    identity: Identity, stub: Stub
) -> None:
    a = await person_a(stub)
    await all_published(identity)
    before = await row_counts(identity)
    unknown = str(uuid.uuid4())
    missing = key("core", "nobody")
    requests: list[tuple[str, Message]] = [
        ("GetParty", pb.GetPartyRequest(party_id=unknown)),
        ("GetPartyHistory", pb.GetPartyHistoryRequest(party_id=unknown)),
        ("MergeParties", pb.MergePartiesRequest(party_ids=[a, unknown])),
        (
            "SplitParty",
            pb.SplitPartyRequest(party_id=unknown, source_records=[missing]),
        ),
        ("ExplainLink", pb.ExplainLinkRequest(record_a=key("core", "A-1"), record_b=missing)),
        (
            "RecordLinkDecision",
            pb.RecordLinkDecisionRequest(
                record_a=missing,
                record_b=key("core", "A-1"),
                decision=pb.LINK_DECISION_ALWAYS_LINK,
            ),
        ),
        (
            "ResolveLinkReview",
            pb.ResolveLinkReviewRequest(review_id=unknown, outcome=pb.REVIEW_OUTCOME_LINK),
        ),
    ]

    codes = {
        method: (await rpc_error(call(stub, method, request))).code()
        for method, request in requests
    }

    assert codes == {method: grpc.StatusCode.NOT_FOUND for method, _ in requests}
    assert await row_counts(identity) == before


async def test_merging_a_retired_party_or_splitting_off_everything_is_failed_precondition(
    identity: Identity, stub: Stub
) -> None:
    a = await person_a(stub)
    b = await person_b(stub)
    c = await link(stub, "crm", "C-1", full_name="赵磊", phone="13511112222")
    d = await link(
        stub,
        "fx",
        "D-1",
        full_name="赵磊",
        id_type=party_pb2.ID_TYPE_RESIDENT_ID,
        id_number="110105199003070017",  # another valid number than person A's
    )
    await stub.MergeParties(pb.MergePartiesRequest(party_ids=[a, b]), timeout=5)
    await all_published(identity)
    before = await row_counts(identity)
    published = await stream_messages(identity)

    retired = await rpc_error(
        stub.MergeParties(pb.MergePartiesRequest(party_ids=[b, c]), timeout=5)
    )
    everything = await rpc_error(
        stub.SplitParty(
            pb.SplitPartyRequest(
                party_id=a,
                source_records=[
                    key("core", "A-1"),
                    key("mobile", "A-2"),
                    key("cards", "B-1"),
                    key("loans", "B-2"),
                ],
            ),
            timeout=5,
        )
    )
    stranger = await rpc_error(
        stub.SplitParty(
            pb.SplitPartyRequest(party_id=a, source_records=[key("crm", "C-1")]),
            timeout=5,
        )
    )
    split_retired = await rpc_error(
        stub.SplitParty(
            pb.SplitPartyRequest(party_id=b, source_records=[key("cards", "B-1")]),
            timeout=5,
        )
    )
    never_in_one_party = await rpc_error(
        stub.RecordLinkDecision(
            pb.RecordLinkDecisionRequest(
                record_a=key("core", "A-1"),
                record_b=key("cards", "B-1"),
                decision=pb.LINK_DECISION_NEVER_LINK,
            ),
            timeout=5,
        )
    )

    two_resident_ids = await rpc_error(
        stub.MergeParties(pb.MergePartiesRequest(party_ids=[a, d]), timeout=5)
    )
    assert "different valid resident ID numbers" in (two_resident_ids.details() or "")

    for error in (
        retired,
        everything,
        stranger,
        split_retired,
        never_in_one_party,
        two_resident_ids,
    ):
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert await row_counts(identity) == before
    assert await stream_messages(identity) == published
