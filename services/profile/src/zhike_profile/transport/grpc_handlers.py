from __future__ import annotations

import grpc

from zhike.profile.v1 import profile_service_pb2 as pb
from zhike.profile.v1 import profile_service_pb2_grpc as pb_grpc
from zhike_profile.domain.service import ProfileQueries
from zhike_profile.transport import codec


class ProfileHandlers(pb_grpc.ProfileServiceServicer):
    def __init__(self, queries: ProfileQueries) -> None:
        self._queries = queries

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetProfileResponse:
        profile = await self._queries.get_profile(request.party_id)
        return pb.GetProfileResponse(profile=codec.profile_message(profile))

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ProfileServiceServicer_to_server(self, server)
