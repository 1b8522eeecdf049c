from __future__ import annotations

import grpc

from zhike.notifications.v1 import notifications_service_pb2 as pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as pb_grpc


class NotificationsHandlers(pb_grpc.NotificationsServiceServicer):
    """The contract is served; dispatch arrives with the notifications issue, so the RPC says so."""

    async def SendNotification(
        self, request: pb.SendNotificationRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SendNotificationResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "notification dispatch is not available in this release"
        )
        raise AssertionError("abort() raises")

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_NotificationsServiceServicer_to_server(self, server)
