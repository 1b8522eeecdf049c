from __future__ import annotations

import grpc
from zhike.notifications.v1 import notifications_service_pb2_grpc as pb_grpc


class NotificationsHandlers(pb_grpc.NotificationsServiceServicer):
    """The contract is served; its RPCs answer UNIMPLEMENTED until the notifications issue lands."""

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_NotificationsServiceServicer_to_server(self, server)
