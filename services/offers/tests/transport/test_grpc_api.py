"""The offers service starts in-process and serves its contract (decisioning comes later)."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from zhike.offers.v1 import offers_pb2, offers_service_pb2, offers_service_pb2_grpc
from zhike_offers.app import DEFINITION, SERVICE_NAME
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    readiness,
    running_service,
    wait_serving,
)

SERVING = int(health_pb2.HealthCheckResponse.SERVING)


async def test_offers_service_is_serving_and_every_rpc_is_unimplemented(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        assert await readiness(service.grpc_port, SERVICE_NAME) == SERVING
        assert await readiness(service.grpc_port, "liveness") == SERVING

        # Every role: the access check passes and the handler answers.
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = offers_service_pb2_grpc.OffersServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.DecideOffers(
                    offers_service_pb2.DecideOffersRequest(
                        party_id=str(uuid.uuid4()), channel=offers_pb2.CHANNEL_MOBILE_APP
                    ),
                    timeout=5,
                )
            codes = {}
            descriptor = offers_service_pb2.DESCRIPTOR.services_by_name["OffersService"]
            for method in descriptor.methods:
                call = channel.unary_unary(
                    f"/{SERVICE_NAME}/{method.name}",
                    request_serializer=bytes,
                    response_deserializer=bytes,
                )
                try:
                    await call(b"", timeout=5)
                    codes[method.name] = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as error:
                    codes[method.name] = error.code()

        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert codes == dict.fromkeys(codes, grpc.StatusCode.UNIMPLEMENTED)
        assert len(codes) == 11
        assert SERVICE_NAME == "zhike.offers.v1.OffersService"
