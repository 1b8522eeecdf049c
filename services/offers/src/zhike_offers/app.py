"""Composition root."""

from __future__ import annotations

from zhike.offers.v1 import offers_service_pb2
from zhike_offers.settings import OffersSettings
from zhike_offers.transport.grpc_handlers import OffersHandlers
from zhike_runtime.app import Platform, ServiceDefinition, Wiring

SERVICE_NAME = offers_service_pb2.DESCRIPTOR.services_by_name["OffersService"].full_name


def wire(platform: Platform[OffersSettings]) -> Wiring:
    return Wiring(grpc_registrations=[OffersHandlers().register])


DEFINITION = ServiceDefinition(
    name="offers",
    settings_type=OffersSettings,
    grpc_service_names=(SERVICE_NAME,),
    migrations=None,
    stream=None,
    wire=wire,
)
