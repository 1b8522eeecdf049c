"""`zhike fx-story` against the four services as processes and the local SMS gateway, with a
calendar in which every day is a working day and the customer's zone at mid-day: the story's
ending is the SMS sent (one, at the gateway, phone masked in what is printed), still sent after
the USD has left, and no second SMS."""

from __future__ import annotations

import io
import json

from rich.console import Console

from zhike_notifications.local_gateways.testing import GatewayProcess
from zhike_notifications.testing import midday_zone
from zhike_runtime.testing.services import TEST_ISSUER
from zhike_simulator.fx_story import READER_ROLES, SOURCE_ROLES, Targets, play

from .conftest import ServiceProcess, serving

# Not DELIVERED: the local gateways post no delivery receipts.
SENT = "NOTIFICATION_STATUS_SENT"


async def test_at_mid_day_on_a_working_day_the_story_sends_one_sms_and_it_stays_sent(
    services: dict[str, ServiceProcess],
    gateway: GatewayProcess,
    notifications: ServiceProcess,
) -> None:
    running = [services["identity"], services["profile"], services["offers"], notifications]
    await serving(*running)
    printed = io.StringIO()

    outcome = await play(
        Targets(*(service.address for service in running)),
        source_token=TEST_ISSUER.mint(list(SOURCE_ROLES), subject="fx-story-test"),
        reader_token=TEST_ISSUER.mint(list(READER_ROLES), subject="fx-story-test"),
        state_dir=gateway.state_dir,
        time_zone=midday_zone(14),
        timeout=30,
        console=Console(file=printed, width=400, highlight=False, color_system=None),
    )

    text = printed.getvalue()
    assert outcome.first == SENT, text
    assert outcome.last == SENT, text
    [sms_file] = outcome.sms_files  # one SMS, and no second after the USD left
    sms = json.loads(sms_file.read_text(encoding="utf-8"))
    assert sms["out_id"] == outcome.notification_id
    assert str(sms_file) in text
    assert sms["text"] in text
    assert sms["to"] not in text  # the phone only masked
    assert f"{sms['to'][:6]}****{sms['to'][-4:]}" in text
    assert "stays sent, and no second SMS follows (the gateway holds 1 SMS" in text
    assert "DEFERRED" not in text
    assert "CANCELLED" not in text
