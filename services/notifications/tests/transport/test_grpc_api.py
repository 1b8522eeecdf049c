"""The notifications service starts in-process and serves its contract (dispatch comes later)."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from zhike.notifications.v1 import notifications_service_pb2, notifications_service_pb2_grpc
from zhike_notifications.app import DEFINITION, SERVICE_NAME
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    readiness,
    running_service,
    wait_serving,
)

SERVING = int(health_pb2.HealthCheckResponse.SERVING)


async def test_notifications_service_is_serving_and_send_is_unimplemented(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        assert await readiness(service.grpc_port, SERVICE_NAME) == SERVING
        assert await readiness(service.grpc_port, "liveness") == SERVING

        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = notifications_service_pb2_grpc.NotificationsServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.SendNotification(
                    notifications_service_pb2.SendNotificationRequest(
                        party_id=str(uuid.uuid4()),
                        channel=notifications_service_pb2.NOTIFICATION_CHANNEL_SMS,
                        template_id="welcome",
                        idempotency_key=str(uuid.uuid4()),
                    ),
                    timeout=5,
                )

        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert SERVICE_NAME == "zhike.notifications.v1.NotificationsService"
