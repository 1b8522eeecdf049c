from __future__ import annotations

import grpc

from zhike.offers.v1 import offers_service_pb2 as pb
from zhike.offers.v1 import offers_service_pb2_grpc as pb_grpc


class OffersHandlers(pb_grpc.OffersServiceServicer):
    """The contract is served; decisioning arrives with the offers issue, so the RPC says so."""

    async def DecideOffers(
        self, request: pb.DecideOffersRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.DecideOffersResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "offer decisioning is not available in this release"
        )
        raise AssertionError("abort() raises")

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_OffersServiceServicer_to_server(self, server)
