"""ListLinkReviews' page_size over gRPC (RELIABILITY.md S11 and bad-input class 12): negative is
INVALID_ARGUMENT naming the field, 0 means the default, and a million is clamped to the
configured maximum (ZHIKE_MAX_PAGE_SIZE) with a next-page token rather than refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type import date_pb2

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc, party_pb2
from zhike_identity.app import DEFINITION
from zhike_runtime.grpc_errors import rich_status
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, running_service, wait_serving

if TYPE_CHECKING:
    from zhike.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub as Stub

MAX_PAGE_SIZE = 2
REVIEWS = 3


@pytest.fixture
async def stub(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stub]:
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}",
        nats_url=nats_server.url,
        max_page_size=MAX_PAGE_SIZE,
    ) as service:
        await wait_serving(service.grpc_port)
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = cast("Stub", identity_service_pb2_grpc.IdentityServiceStub(channel))
            await open_reviews(stub, REVIEWS)
            yield stub


async def open_reviews(stub: Stub, count: int) -> None:
    """Pairs that agree on name, birth date and sex but share no identifier: each pair lands
    between the review and link thresholds, so identity opens one review per pair."""
    for i, name in enumerate(("李明华", "张伟国", "陈建平")[:count]):
        for source_system in ("crm", "loans"):
            await stub.LinkSourceRecord(
                pb.LinkSourceRecordRequest(
                    source_record=party_pb2.SourceRecord(
                        key=party_pb2.SourceRecordKey(
                            source_system=source_system, source_record_id=f"R-{i}"
                        ),
                        full_name=name,
                        birth_date=date_pb2.Date(year=1985, month=3, day=12 + i),
                        gender=party_pb2.GENDER_MALE,
                    )
                ),
                timeout=5,
            )
    everything = await stub.ListLinkReviews(pb.ListLinkReviewsRequest(page_size=1), timeout=5)
    assert everything.next_page_token  # more than one review is open


async def listed(stub: Stub, page_size: int) -> tuple[int, bool]:
    response = await stub.ListLinkReviews(pb.ListLinkReviewsRequest(page_size=page_size), timeout=5)
    return len(response.reviews), bool(response.next_page_token)


async def test_a_huge_page_size_is_clamped_to_the_configured_maximum(stub: Stub) -> None:
    assert await listed(stub, 10**6) == (MAX_PAGE_SIZE, True)
    assert await listed(stub, 2**31 - 1) == (MAX_PAGE_SIZE, True)


async def test_page_size_zero_means_the_default_within_the_maximum(stub: Stub) -> None:
    # The default (50) is above this deployment's maximum, so the maximum applies.
    assert await listed(stub, 0) == (MAX_PAGE_SIZE, True)
    assert await listed(stub, 1) == (1, True)


async def test_a_negative_page_size_is_invalid_and_names_the_field(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListLinkReviews(pb.ListLinkReviewsRequest(page_size=-1), timeout=5)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rich_status(raised.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["page_size"]
