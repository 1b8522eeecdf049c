"""gRPC handlers: decode, call the use case, encode. Errors are mapped by the runtime."""

from __future__ import annotations

import grpc

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc as pb_grpc
from zhike_identity.domain.service import IdentityService
from zhike_identity.transport import codec
from zhike_runtime.validation import Violations


class IdentityHandlers(pb_grpc.IdentityServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def LinkSourceRecord(
        self, request: pb.LinkSourceRecordRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.LinkSourceRecordResponse:
        if not request.HasField("source_record"):
            v = Violations()
            v.add("source_record", "is required")
            v.raise_if_any()
        outcome = await self._service.link_source_record(
            codec.source_record_input(request.source_record)
        )
        return pb.LinkSourceRecordResponse(
            party_id=outcome.party_id, party_created=outcome.party_created
        )

    async def GetParty(
        self, request: pb.GetPartyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetPartyResponse:
        party = await self._service.get_party(request.party_id)
        return pb.GetPartyResponse(party=codec.party_message(party))

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_IdentityServiceServicer_to_server(self, server)
