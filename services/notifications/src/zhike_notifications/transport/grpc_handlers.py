"""gRPC handlers: decode, call the use case, encode. Errors are mapped by the runtime.

Who may call what, and for which party, the runtime's interceptor has already decided from the
access rules: a customer-delegated token reaches ListInbox and MarkInboxRead only for its own
party (another party is NOT_FOUND before any handler runs).
"""

from __future__ import annotations

from typing import TypeAlias

import grpc

from zhike.notifications.v1 import notifications_service_pb2 as pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as pb_grpc
from zhike_notifications.domain.service import Intake, Queries
from zhike_notifications.transport import codec

Context: TypeAlias = "grpc.aio.ServicerContext[object, object]"


class NotificationsHandlers(pb_grpc.NotificationsServiceServicer):
    def __init__(self, intake: Intake, queries: Queries) -> None:
        self._intake = intake
        self._queries = queries

    async def SendNotification(
        self, request: pb.SendNotificationRequest, context: Context
    ) -> pb.SendNotificationResponse:
        stored = await self._intake.send(codec.send_request(request))
        return pb.SendNotificationResponse(
            notification_id=stored.notification.notification_id,
            notification=codec.notification_message(stored.notification),
        )

    async def GetNotification(
        self, request: pb.GetNotificationRequest, context: Context
    ) -> pb.GetNotificationResponse:
        notification = await self._queries.get(request.notification_id)
        return pb.GetNotificationResponse(notification=codec.notification_message(notification))

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        page = await self._queries.of_party(request.party_id, request.page_size, request.page_token)
        return pb.ListNotificationsResponse(
            notifications=[codec.notification_message(n) for n in page.notifications],
            next_page_token=page.next_page_token,
        )

    async def ListInbox(
        self, request: pb.ListInboxRequest, context: Context
    ) -> pb.ListInboxResponse:
        page = await self._queries.inbox(
            request.party_id, request.page_size, request.page_token, request.unread_only
        )
        return pb.ListInboxResponse(
            messages=[codec.inbox_message(entry) for entry in page.messages],
            next_page_token=page.next_page_token,
            unread_count=page.unread_count,
        )

    async def MarkInboxRead(
        self, request: pb.MarkInboxReadRequest, context: Context
    ) -> pb.MarkInboxReadResponse:
        marked = await self._queries.mark_read(request.party_id, list(request.notification_ids))
        return pb.MarkInboxReadResponse(marked=marked)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_NotificationsServiceServicer_to_server(self, server)
