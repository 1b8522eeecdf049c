"""Composition root: settings → database → repositories → use cases → handlers."""

from __future__ import annotations

from pathlib import Path

from zhike.profile.v1 import profile_service_pb2
from zhike_profile.domain.service import ProfileQueries
from zhike_profile.settings import ProfileSettings
from zhike_profile.storage.repository import profile_reader
from zhike_profile.transport.event_handlers import identity_consumer
from zhike_profile.transport.grpc_handlers import ProfileHandlers
from zhike_runtime.app import Platform, ServiceDefinition, Wiring

SERVICE_NAME = profile_service_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name


def wire(platform: Platform[ProfileSettings]) -> Wiring:
    queries = ProfileQueries(profile_reader(platform.database))
    return Wiring(
        grpc_registrations=[ProfileHandlers(queries).register],
        consumers=[identity_consumer()],
    )


DEFINITION = ServiceDefinition(
    name="profile",
    settings_type=ProfileSettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=Path(__file__).resolve().parent / "storage" / "migrations",
    stream=None,
    wire=wire,
)
