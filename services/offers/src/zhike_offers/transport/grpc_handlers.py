from __future__ import annotations

from typing import NoReturn, TypeAlias

import grpc

from zhike.offers.v1 import offers_service_pb2 as pb
from zhike.offers.v1 import offers_service_pb2_grpc as pb_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[object, object]"


async def _not_yet(context: Context) -> NoReturn:
    # Said explicitly: a method left to the generated base class would raise
    # NotImplementedError, which the runtime's interceptor answers as INTERNAL.
    await context.abort(
        grpc.StatusCode.UNIMPLEMENTED, "offer decisioning is not available in this release"
    )
    raise AssertionError("abort() raises")


class OffersHandlers(pb_grpc.OffersServiceServicer):
    """The contract is served; decisioning arrives with the offers issue, so every RPC says so."""

    async def DecideOffers(
        self, request: pb.DecideOffersRequest, context: Context
    ) -> pb.DecideOffersResponse:
        await _not_yet(context)

    async def RecordResponse(
        self, request: pb.RecordResponseRequest, context: Context
    ) -> pb.RecordResponseResponse:
        await _not_yet(context)

    async def CreateOffer(
        self, request: pb.CreateOfferRequest, context: Context
    ) -> pb.CreateOfferResponse:
        await _not_yet(context)

    async def UpdateOffer(
        self, request: pb.UpdateOfferRequest, context: Context
    ) -> pb.UpdateOfferResponse:
        await _not_yet(context)

    async def RetireOffer(
        self, request: pb.RetireOfferRequest, context: Context
    ) -> pb.RetireOfferResponse:
        await _not_yet(context)

    async def GetOffer(self, request: pb.GetOfferRequest, context: Context) -> pb.GetOfferResponse:
        await _not_yet(context)

    async def ListOffers(
        self, request: pb.ListOffersRequest, context: Context
    ) -> pb.ListOffersResponse:
        await _not_yet(context)

    async def SimulateOffer(
        self, request: pb.SimulateOfferRequest, context: Context
    ) -> pb.SimulateOfferResponse:
        await _not_yet(context)

    async def ListDecisions(
        self, request: pb.ListDecisionsRequest, context: Context
    ) -> pb.ListDecisionsResponse:
        await _not_yet(context)

    async def GetContactPreferences(
        self, request: pb.GetContactPreferencesRequest, context: Context
    ) -> pb.GetContactPreferencesResponse:
        await _not_yet(context)

    async def SetContactPreferences(
        self, request: pb.SetContactPreferencesRequest, context: Context
    ) -> pb.SetContactPreferencesResponse:
        await _not_yet(context)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_OffersServiceServicer_to_server(self, server)
