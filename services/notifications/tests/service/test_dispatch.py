"""Dispatch end to end inside the service: SendNotification → gates → a local gateway, with the
party's address and preferences from real identity and profile services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike_runtime.testing.processes import NatsServer

from ..stack import PHONE, Stack, notifications_stack


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with notifications_stack(nats_server, tmp_path) as running:
        yield running


async def test_a_one_time_passcode_reaches_the_gateway_at_once_with_the_code_shown(
    stack: Stack,
) -> None:
    party_id = await stack.link("OTP-1")

    sent = await stack.send(
        party_id, "otp_sms_v1", key=f"otp-{uuid.uuid4()}", values={"code": "482913"}
    )
    done = await stack.status_becomes(sent.notification_id, model_pb.NOTIFICATION_STATUS_SENT)

    [sms] = stack.sms()
    assert sms["out_id"] == sent.notification_id
    assert sms["to"] == PHONE
    assert "482913" in sms["text"]
    assert done.provider == "local_sms"
    assert done.attempts == 1


async def test_a_marketing_sms_without_consent_is_suppressed_and_never_sent(
    stack: Stack,
) -> None:
    party_id = await stack.link("MKT-1")

    sent = await stack.send(
        party_id,
        "offer_usd_fx_wealth_sms_v1",
        key=f"mkt-{uuid.uuid4()}",
        category=model_pb.NOTIFICATION_CATEGORY_MARKETING,
    )
    done = await stack.status_becomes(sent.notification_id, model_pb.NOTIFICATION_STATUS_SUPPRESSED)

    assert done.suppression.reason == model_pb.SUPPRESSION_REASON_NO_CONSENT
    assert stack.sms() == []
