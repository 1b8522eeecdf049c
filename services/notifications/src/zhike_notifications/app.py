"""Composition root."""

from __future__ import annotations

from zhike.notifications.v1 import notifications_service_pb2
from zhike_notifications.settings import NotificationsSettings
from zhike_notifications.transport.grpc_handlers import NotificationsHandlers
from zhike_runtime.app import Platform, ServiceDefinition, Wiring

SERVICE_NAME = notifications_service_pb2.DESCRIPTOR.services_by_name[
    "NotificationsService"
].full_name


def wire(platform: Platform[NotificationsSettings]) -> Wiring:
    return Wiring(grpc_registrations=[NotificationsHandlers().register])


DEFINITION = ServiceDefinition(
    name="notifications",
    settings_type=NotificationsSettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=None,
    stream=None,
    wire=wire,
)
