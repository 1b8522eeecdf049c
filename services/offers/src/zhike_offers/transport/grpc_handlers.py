from __future__ import annotations

import grpc
from zhike.offers.v1 import offers_service_pb2_grpc as pb_grpc


class OffersHandlers(pb_grpc.OffersServiceServicer):
    """The contract is served; its RPCs answer UNIMPLEMENTED until the offers issue lands."""

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_OffersServiceServicer_to_server(self, server)
