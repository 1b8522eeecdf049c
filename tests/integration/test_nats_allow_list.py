"""The NATS allow-list (zhike_runtime/events/nats_permissions.py) says what each service does on
NATS; this holds it to what the services really declare, so that a new stream or consumer cannot
ship without its permissions (it would fail in every permissioned cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhike_identity.app import DEFINITION as IDENTITY
from zhike_notifications.app import DEFINITION as NOTIFICATIONS
from zhike_offers.app import DEFINITION as OFFERS
from zhike_profile.app import DEFINITION as PROFILE
from zhike_runtime.app import RunningService, ServiceDefinition
from zhike_runtime.events.nats_permissions import SERVICES, DurableConsumer, ServiceGrant
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.services import TEST_SETTINGS

DEFINITIONS: dict[str, ServiceDefinition[ServiceSettings]] = {
    "identity": IDENTITY,  # type: ignore[dict-item]
    "profile": PROFILE,  # type: ignore[dict-item]
    "offers": OFFERS,  # type: ignore[dict-item]
    "notifications": NOTIFICATIONS,  # type: ignore[dict-item]
}


def test_every_service_has_exactly_one_line_in_the_allow_list() -> None:
    assert [grant.user for grant in SERVICES] == list(DEFINITIONS)


@pytest.mark.parametrize("grant", SERVICES, ids=lambda grant: grant.user)
async def test_the_allow_list_names_what_the_service_declares(
    grant: ServiceGrant, tmp_path: Path
) -> None:
    definition = DEFINITIONS[grant.user]
    settings = definition.settings_type(
        **(TEST_SETTINGS | {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"})
    )
    service = RunningService(definition, settings)  # built, not started: nothing connects
    try:
        owned = definition.streams
        consumed = tuple(
            DurableConsumer(consumer.spec.durable, consumer.spec.stream)
            for consumer in service.consumers
        )
        assert grant.owns == owned
        assert grant.consumes == consumed
    finally:
        await service.database.dispose()
        service.telemetry.shutdown()
