"""Access control across all four services (RELIABILITY S2, S3, S4): every RPC refuses a caller
without a token and a caller without its permission, and a customer-delegated token reaches only
its own party — with the same answer for parties that exist and parties that don't, none of
another party's data, and an audit record for every refused attempt."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc, party_pb2
from zhike.profile.v1 import profile_service_pb2, profile_service_pb2_grpc
from zhike_identity.app import DEFINITION as IDENTITY
from zhike_notifications.app import DEFINITION as NOTIFICATIONS
from zhike_offers.app import DEFINITION as OFFERS
from zhike_profile.app import DEFINITION as PROFILE
from zhike_runtime.app import RunningService
from zhike_runtime.testing.contracts import every_service_method
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    running_service,
    wait_serving,
)

CUSTOMER_A = {"full_name": "刘建军", "id_number": "11010519491231002X", "phone": "13812345678"}
CUSTOMER_B = {"full_name": "王秀英", "id_number": "440306198505120028", "phone": "13987654321"}


@dataclass
class Platform:
    services: dict[str, RunningService]  # type: ignore[type-arg]

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.services[service].grpc_port}"


@pytest.fixture
async def platform(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Platform]:
    async with AsyncExitStack() as stack:
        started = {}
        for definition in (IDENTITY, PROFILE, OFFERS, NOTIFICATIONS):
            service = await stack.enter_async_context(
                running_service(
                    definition,
                    database_url=f"sqlite+aiosqlite:///{tmp_path / definition.name}.db",
                    nats_url=nats_server.url,
                )
            )
            await wait_serving(service.grpc_port)
            started[definition.name] = service
        yield Platform(started)


_SERVICE_OF = {
    "zhike.identity.v1.IdentityService": "identity",
    "zhike.profile.v1.ProfileService": "profile",
    "zhike.offers.v1.OffersService": "offers",
    "zhike.notifications.v1.NotificationsService": "notifications",
}


async def code_of(channel: grpc.aio.Channel, method: str) -> grpc.StatusCode:
    call = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
    try:
        await call(b"", timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_every_rpc_refuses_a_call_without_a_token(platform: Platform) -> None:
    codes = {}
    for method in sorted(every_service_method()):
        service = _SERVICE_OF[method.split("/")[1]]
        async with grpc.aio.insecure_channel(platform.address(service)) as channel:
            codes[method] = await code_of(channel, method)
    assert codes == dict.fromkeys(codes, grpc.StatusCode.UNAUTHENTICATED)


async def test_every_rpc_refuses_a_valid_token_without_its_permission(platform: Platform) -> None:
    codes = {}
    for method in sorted(every_service_method()):
        service = _SERVICE_OF[method.split("/")[1]]
        async with authorised_channel(platform.address(service), roles=[]) as channel:
            codes[method] = await code_of(channel, method)
    assert codes == dict.fromkeys(codes, grpc.StatusCode.PERMISSION_DENIED)


async def link(platform: Platform, record_id: str, customer: dict[str, str]) -> str:
    async with authorised_channel(platform.address("identity"), roles=["source_system"]) as ch:
        stub = identity_service_pb2_grpc.IdentityServiceStub(ch)
        response = await stub.LinkSourceRecord(
            identity_pb.LinkSourceRecordRequest(
                source_record=party_pb2.SourceRecord(
                    key=party_pb2.SourceRecordKey(
                        source_system="core_deposits", source_record_id=record_id
                    ),
                    id_type=party_pb2.ID_TYPE_RESIDENT_ID,
                    full_name=customer["full_name"],
                    id_number=customer["id_number"],
                    phone=customer["phone"],
                )
            ),
            timeout=5,
        )
        return str(response.party_id)


def other_party_ids(existing: str, count: int) -> list[str]:
    """Sequential and random guesses, with a real party's id among them."""
    rng = random.Random(20261201)
    base = uuid.UUID(existing).int
    sequential = [str(uuid.UUID(int=(base + i) % 2**128)) for i in range(1, count // 2)]
    guessed = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count - len(sequential) - 1)]
    return [existing, *sequential, *guessed]


async def test_a_customer_token_reads_only_its_own_party_in_identity_and_profile(
    platform: Platform,
) -> None:
    party_a = await link(platform, "D-1", CUSTOMER_A)
    party_b = await link(platform, "D-2", CUSTOMER_B)
    async with authorised_channel(platform.address("profile"), roles=["call_centre_agent"]) as ch:
        profile = profile_service_pb2_grpc.ProfileServiceStub(ch)

        async def projected() -> bool:
            try:
                await profile.GetProfile(
                    profile_service_pb2.GetProfileRequest(party_id=party_b), timeout=5
                )
            except grpc.aio.AioRpcError:
                return False
            return True

        await eventually(projected)
    others = other_party_ids(party_b, 1000)
    answers: dict[str, set[tuple[grpc.StatusCode, str]]] = {"identity": set(), "profile": set()}
    leaked = 0
    async with (
        authorised_channel(
            platform.address("identity"), roles=["channel_app"], party_id=party_a
        ) as identity_channel,
        authorised_channel(
            platform.address("profile"), roles=["channel_app"], party_id=party_a
        ) as profile_channel,
    ):
        identity = identity_service_pb2_grpc.IdentityServiceStub(identity_channel)
        profile = profile_service_pb2_grpc.ProfileServiceStub(profile_channel)
        own = await identity.GetParty(identity_pb.GetPartyRequest(party_id=party_a), timeout=5)
        assert own.party.party_id == party_a
        for other in others:
            for service, call in (
                ("identity", identity.GetParty(identity_pb.GetPartyRequest(party_id=other))),
                (
                    "profile",
                    profile.GetProfile(profile_service_pb2.GetProfileRequest(party_id=other)),
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await call
                error = raised.value
                details = error.details() or ""
                # The answer's shape, with the asked-for id taken out, is one for all.
                answers[service].add((error.code(), details.replace(other, "<id>")))
                trailers = b"".join(
                    value
                    for _, value in (error.trailing_metadata() or ())
                    if isinstance(value, bytes)
                )
                for secret in CUSTOMER_B.values():
                    leaked += details.count(secret) + trailers.count(secret.encode())
    assert answers == {
        "identity": {(grpc.StatusCode.NOT_FOUND, "party '<id>' not found")},
        "profile": {(grpc.StatusCode.NOT_FOUND, "party '<id>' not found")},
    }
    assert leaked == 0
    for service in ("identity", "profile"):
        refused = [
            e
            for e in await platform.services[service].audit.read(limit=10_000)
            if e.outcome == "NOT_FOUND"
        ]
        assert len(refused) == len(others)
        assert {e.actor for e in refused} == {"test-user"}
        assert sorted(e.party_id for e in refused) == sorted(others)
