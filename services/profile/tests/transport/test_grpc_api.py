"""The profile gRPC API in-process: a real grpc.aio server, real nats-server, SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from zhike.profile.v1 import profile_service_pb2, profile_service_pb2_grpc
from zhike_profile.app import DEFINITION
from zhike_runtime.grpc_errors import rich_status
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, running_service


@pytest.fixture
async def channel(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Any]:
    # The RPC does not need NATS to be ready, so there is no wait for readiness here.
    async with (
        running_service(
            DEFINITION,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'profile.db'}",
            nats_url=nats_server.url,
            shutdown_grace_seconds=1.0,
        ) as service,
        authorised_channel(f"127.0.0.1:{service.grpc_port}") as opened,
    ):
        yield opened


async def rpc_error(call: Awaitable[Any]) -> Any:
    """The AioRpcError a call ends with (fails the test if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def status_details(error: Any) -> status_pb2.Status:
    status = rich_status(error)
    assert status is not None, f"no status details in the trailers of {error.code()}"
    return status


def get_profile(channel: Any, party_id: str) -> Awaitable[Any]:
    stub = profile_service_pb2_grpc.ProfileServiceStub(channel)
    call: Awaitable[Any] = stub.GetProfile(
        profile_service_pb2.GetProfileRequest(party_id=party_id), timeout=5
    )
    return call


async def test_get_profile_for_unknown_party_is_not_found(channel: Any) -> None:
    unknown = str(uuid.uuid4())

    error = await rpc_error(get_profile(channel, unknown))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    info = error_details_pb2.ResourceInfo()
    assert status_details(error).details[0].Unpack(info)
    assert (info.resource_type, info.resource_name) == ("profile", unknown)


async def test_get_profile_with_malformed_ids_names_party_id(channel: Any) -> None:
    for party_id in ("not-a-uuid", "a.b.>", "", str(uuid.uuid4()).upper()):
        error = await rpc_error(get_profile(channel, party_id))

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, party_id
        bad_request = error_details_pb2.BadRequest()
        assert status_details(error).details[0].Unpack(bad_request)
        assert [v.field for v in bad_request.field_violations] == ["party_id"], party_id
