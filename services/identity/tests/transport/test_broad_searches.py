"""What a call centre's FindParties gets over gRPC when its criterion is held by more records than a
search reads: FAILED_PRECONDITION naming the criterion, never a part of the list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type import date_pb2

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc
from zhike_identity.app import DEFINITION
from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.resolver import BLOCK_LIMIT, Resolution
from zhike_identity.storage.bulk import write_store
from zhike_runtime import grpc_errors
from zhike_runtime.ids import new_id
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    fixed_field_keys,
    running_service,
    wait_serving,
)

if TYPE_CHECKING:
    from zhike.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub as Stub

STEWARD = "agent-chen"


@pytest.fixture
async def stub(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stub]:
    """The service over a store where more customers called 王伟 were born on 1985-03-02 than a
    search reads, and one on the day after."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}"
    records = [
        RawRecord("core", f"W-{n:04d}", full_name="王伟", birth_date="1985-03-02")
        for n in range(BLOCK_LIMIT + 1)
    ]
    records.append(RawRecord("cards", "C-1", full_name="王伟", birth_date="1985-03-03"))
    parties = [new_id() for _ in records]
    await write_store(
        url,
        records,
        Resolution(parties, [], []),
        keys=fixed_field_keys(),
        model_version="t",
        workers=1,
    )
    async with running_service(DEFINITION, database_url=url, nats_url=nats_server.url) as service:
        await wait_serving(service.grpc_port)
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}", subject=STEWARD) as channel:
            yield cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))


def by_name(day: int) -> pb.FindPartiesRequest:
    return pb.FindPartiesRequest(
        name_and_birth_date=pb.NameAndBirthDate(
            full_name="王伟", birth_date=date_pb2.Date(year=1985, month=3, day=day)
        )
    )


async def test_a_search_too_broad_to_list_is_failed_precondition_naming_its_criterion(
    stub: Stub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.FindParties(by_name(2), timeout=5)

    error = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = grpc_errors.rich_status(error)
    assert status is not None
    failure = error_details_pb2.PreconditionFailure()
    assert any(detail.Unpack(failure) for detail in status.details)
    assert [(v.type, v.subject) for v in failure.violations] == [("STATE", "name_and_birth_date")]
    message = error.details() or ""
    assert "too many" in message
    assert "王伟" not in message
    assert "1985" not in message
    # The day after, one record: answered.
    assert len((await stub.FindParties(by_name(3), timeout=5)).party_ids) == 1
