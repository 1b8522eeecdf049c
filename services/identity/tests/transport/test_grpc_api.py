"""The identity gRPC API in-process: a real grpc.aio server, real nats-server, SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2, status_pb2
from google.type import date_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from zhike.identity.v1 import events_pb2, identity_service_pb2, identity_service_pb2_grpc, party_pb2
from zhike_identity.app import DEFINITION, SERVICE_NAME
from zhike_identity.settings import IdentitySettings
from zhike_identity.storage import schema
from zhike_runtime import grpc_errors
from zhike_runtime.app import RunningService
from zhike_runtime.events import headers as h
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.grpc_server import BROKER
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    readiness,
    running_service,
    wait_serving,
)

if TYPE_CHECKING:
    from zhike.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub as Stub

STREAM = "ZHIKE_IDENTITY"
SERVING = int(health_pb2.HealthCheckResponse.SERVING)
NOT_SERVING = int(health_pb2.HealthCheckResponse.NOT_SERVING)
RESIDENT_ID = "11010519491231002X"

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


@pytest.fixture
async def channel(identity: Identity) -> AsyncIterator[Any]:
    async with authorised_channel(f"127.0.0.1:{identity.grpc_port}") as opened:
        yield opened


@pytest.fixture
def stub(channel: Any) -> Stub:
    return cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))


def source_record(
    source_system: str, source_record_id: str, **values: Any
) -> party_pb2.SourceRecord:
    return party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(
            source_system=source_system, source_record_id=source_record_id
        ),
        **values,
    )


def link_request(record: party_pb2.SourceRecord) -> identity_service_pb2.LinkSourceRecordRequest:
    return identity_service_pb2.LinkSourceRecordRequest(source_record=record)


async def rpc_error(call: Awaitable[Any]) -> Any:
    """The AioRpcError a call ends with (fails the test if it succeeds)."""
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


async def count(service: Identity, table: sa.Table) -> int:
    async with service.database.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def stream_messages(service: Identity) -> int:
    info = await service.bus.js.stream_info(STREAM)
    return int(info.state.messages)


async def test_link_source_record_creates_then_joins_a_party(stub: Stub) -> None:
    first = await stub.LinkSourceRecord(
        link_request(
            source_record(
                "core-banking",
                "CIF-1",
                full_name="王小明",
                id_type=party_pb2.ID_TYPE_RESIDENT_ID,
                id_number=RESIDENT_ID,
                birth_date=date_pb2.Date(year=1949, month=12, day=31),
                gender=party_pb2.GENDER_FEMALE,
            )
        ),
        timeout=5,
    )
    second = await stub.LinkSourceRecord(
        link_request(
            source_record(
                "cards", "C-77", id_type=party_pb2.ID_TYPE_RESIDENT_ID, id_number=RESIDENT_ID
            )
        ),
        timeout=5,
    )

    assert first.party_created is True
    assert str(uuid.UUID(first.party_id)) == first.party_id
    assert second.party_id == first.party_id
    assert second.party_created is False
    got = await stub.GetParty(identity_service_pb2.GetPartyRequest(party_id=first.party_id))
    assert got.party.party_id == first.party_id
    assert {(r.key.source_system, r.key.source_record_id) for r in got.party.source_records} == {
        ("core-banking", "CIF-1"),
        ("cards", "C-77"),
    }


async def test_linked_records_are_published_to_the_identity_stream(
    identity: Identity, stub: Stub
) -> None:
    linked = await stub.LinkSourceRecord(link_request(source_record("crm", "1")), timeout=5)

    async def all_published() -> bool:
        return await stream_messages(identity) == 3  # created, linked, golden record

    await eventually(all_published, timeout=10)
    created = await identity.bus.js.get_msg(STREAM, seq=1)
    link = await identity.bus.js.get_msg(STREAM, seq=2)
    assert created.subject == "zhike.identity.v1.party_created"
    assert link.subject == "zhike.identity.v1.source_record_linked"
    assert created.headers is not None
    assert created.headers[h.EVENT_TYPE] == "zhike.identity.v1.PartyCreated"
    assert created.headers[h.MSG_ID] == created.headers[h.EVENT_ID]
    assert events_pb2.PartyCreated.FromString(created.data or b"").party_id == linked.party_id
    assert events_pb2.SourceRecordLinked.FromString(link.data or b"").party_id == linked.party_id


BAD_REQUESTS = [
    ("missing source_record", identity_service_pb2.LinkSourceRecordRequest(), ["source_record"]),
    (
        "empty key",
        link_request(source_record("", "")),
        ["source_record.key.source_system", "source_record.key.source_record_id"],
    ),
    (
        "unset key message",
        link_request(party_pb2.SourceRecord(full_name="王小明")),
        [
            "source_record.key.source_system",
            "source_record.key.source_record_id",
        ],
    ),
    (
        "source system with subject wildcards",
        link_request(source_record("a.b.>", "1")),
        ["source_record.key.source_system"],
    ),
    (
        "100 KB name",
        link_request(source_record("crm", "1", full_name="x" * 100 * 1024)),
        ["source_record.full_name"],
    ),
    (
        "unknown id_type 99",
        link_request(source_record("crm", "1", id_type=99, id_number="E123")),
        ["source_record.id_type"],
    ),
    (
        "unknown gender 99",
        link_request(source_record("crm", "1", gender=99)),
        ["source_record.gender"],
    ),
    (
        "control characters",
        link_request(source_record("crm", "1", full_name="王\x00\x07", address="\u202e路")),
        ["source_record.full_name", "source_record.address"],
    ),
    (
        "bad resident id and birth date",
        link_request(
            source_record(
                "crm",
                "1",
                id_type=party_pb2.ID_TYPE_RESIDENT_ID,
                id_number="110105194912310021",
                birth_date=date_pb2.Date(year=2000, month=2, day=30),
            )
        ),
        ["source_record.id_number", "source_record.birth_date"],
    ),
]


async def test_bad_requests_name_each_field_and_leave_no_trace(
    identity: Identity, stub: Stub
) -> None:
    wrong: list[str] = []
    for label, request, fields in BAD_REQUESTS:
        error = await rpc_error(stub.LinkSourceRecord(request, timeout=5))
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            wrong.append(f"{label}: {error.code()} {error.details()}")
        elif set(violated_fields(error)) != set(fields):
            wrong.append(f"{label}: named {violated_fields(error)}, expected {fields}")
    assert not wrong, "\n".join(wrong)

    assert await count(identity, schema.source_record) == 0
    assert await count(identity, schema.party) == 0
    assert await count(identity, outbox_event) == 0
    # Proof that the relay is live: a good record goes out, and only its three events do.
    await stub.LinkSourceRecord(link_request(source_record("crm", "good")), timeout=5)

    async def good_record_published() -> bool:
        return await stream_messages(identity) >= 3

    await eventually(good_record_published, timeout=10)
    assert await stream_messages(identity) == 3
    assert await count(identity, schema.source_record) == 1
    assert await count(identity, outbox_event) == 3


async def test_invalid_utf8_is_answered_invalid_argument_and_nothing_is_stored(
    identity: Identity, channel: Any
) -> None:
    payload = link_request(source_record("crm", "1", full_name="AAAA")).SerializeToString()
    raw = channel.unary_unary(
        "/zhike.identity.v1.IdentityService/LinkSourceRecord",
        request_serializer=None,
        response_deserializer=identity_service_pb2.LinkSourceRecordResponse.FromString,
    )

    error = await rpc_error(raw(payload.replace(b"AAAA", b"\xff\xfe\xc0\x80"), timeout=5))

    # RELIABILITY.md: the parser refuses it before the handler, and the server answers with the
    # parser's reason ("String field had bad UTF-8") as INVALID_ARGUMENT, not grpcio's
    # INTERNAL or UNKNOWN; such bytes never reach storage.
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count(identity, schema.source_record) == 0
    assert await readiness(identity.grpc_port) == SERVING


async def test_invalid_utf8_leaves_the_service_serving(identity: Identity, channel: Any) -> None:
    payload = link_request(source_record("crm", "1", full_name="AAAA")).SerializeToString()
    raw = channel.unary_unary(
        "/zhike.identity.v1.IdentityService/LinkSourceRecord",
        request_serializer=None,
        response_deserializer=identity_service_pb2.LinkSourceRecordResponse.FromString,
    )

    error = await rpc_error(raw(payload.replace(b"AAAA", b"\xff\xfe\xc0\x80"), timeout=5))

    assert error.code() != grpc.StatusCode.OK
    assert await count(identity, schema.source_record) == 0
    assert await readiness(identity.grpc_port) == SERVING
    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
    ok = await stub.LinkSourceRecord(link_request(source_record("crm", "2")), timeout=5)
    assert ok.party_created is True


async def test_resident_id_with_digit_like_characters_is_invalid_argument(stub: Stub) -> None:
    # "①" passes str.isdigit(), not int(): the caller must get INVALID_ARGUMENT, not INTERNAL.
    error = await rpc_error(
        stub.LinkSourceRecord(
            link_request(
                source_record("crm", "1", id_type=party_pb2.ID_TYPE_RESIDENT_ID, id_number="①" * 15)
            ),
            timeout=5,
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["source_record.id_number"]


async def test_get_party_for_unknown_id_is_not_found(stub: Stub) -> None:
    unknown = str(uuid.uuid4())

    error = await rpc_error(stub.GetParty(identity_service_pb2.GetPartyRequest(party_id=unknown)))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    info = error_details_pb2.ResourceInfo()
    assert rich_status(error).details[0].Unpack(info)
    assert (info.resource_type, info.resource_name) == ("party", unknown)


@pytest.mark.parametrize("party_id", ["", "not-a-uuid", "a.b.>"])
async def test_get_party_with_malformed_id_names_party_id(stub: Stub, party_id: str) -> None:
    error = await rpc_error(stub.GetParty(identity_service_pb2.GetPartyRequest(party_id=party_id)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(error) == ["party_id"]


async def test_oversized_request_is_resource_exhausted_and_server_keeps_serving(
    identity: Identity, stub: Stub
) -> None:
    huge = link_request(source_record("crm", "1", full_name="x" * (5 * 1024 * 1024)))

    error = await rpc_error(stub.LinkSourceRecord(huge, timeout=10))

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await readiness(identity.grpc_port) == SERVING
    ok = await stub.LinkSourceRecord(link_request(source_record("crm", "2")), timeout=5)
    assert ok.party_created is True
    assert await count(identity, schema.source_record) == 1


async def test_reflection_lists_the_identity_service(channel: Any) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

    call = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = [
        service.name
        async for response in call
        for service in response.list_services_response.service
    ]

    assert SERVICE_NAME == "zhike.identity.v1.IdentityService"
    assert SERVICE_NAME in names
    assert "grpc.health.v1.Health" in names


async def test_without_nats_it_is_ready_and_links_wait_in_the_outbox_until_nats_is_back(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    nats_server.stop()
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}",
        nats_url=nats_server.url,
    ) as service:

        async def ready() -> bool:
            return await readiness(service.grpc_port) == SERVING

        # Readiness needs the database only: the outbox holds the events until NATS answers.
        await eventually(ready)
        assert await readiness(service.grpc_port, SERVICE_NAME) == SERVING
        assert await readiness(service.grpc_port, "liveness") == SERVING
        assert await readiness(service.grpc_port, BROKER) == NOT_SERVING
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
            linked = await stub.LinkSourceRecord(link_request(source_record("crm", "1")), timeout=5)
        assert linked.party_created is True
        assert await count(service, outbox_event) == 3

        nats_server.start()
        await wait_serving(service.grpc_port, timeout=20)

        async def published() -> bool:
            return await stream_messages(service) == 3

        await eventually(published, timeout=10)
        assert await readiness(service.grpc_port, SERVICE_NAME) == SERVING
