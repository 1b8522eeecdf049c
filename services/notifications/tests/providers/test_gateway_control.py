"""The gateways' control endpoint, and the gateways run as their own process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.retry import ErrorKind
from zhike_notifications.local_gateways import LocalGateways, stored_emails, stored_records
from zhike_notifications.local_gateways.testing import GatewayProcess, reset_faults, set_fault
from zhike_notifications.providers import (
    HttpProvider,
    OutboundMessage,
    Provider,
    ProviderError,
    SmtpProvider,
)

from .personal import BODY, DEVICE_TOKEN, EMAIL, PHONE, SUBJECT


async def control(http_url: str, method: str, body: dict[str, Any] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=http_url) as client:
        return await client.request(method, "/_control", json=body)


async def test_the_control_endpoint_reports_counts_down_and_resets(gateways: LocalGateways) -> None:
    state = (await control(gateways.http_url, "GET")).json()
    assert {c: s["mode"] for c, s in state.items()} == {"sms": "ok", "push": "ok", "email": "ok"}

    state = await set_fault(gateways.http_url, Channel.SMS, mode="5xx", count=3, delay_ms=10)
    assert (state["sms"]["mode"], state["sms"]["remaining"], state["sms"]["delay_ms"]) == (
        "5xx",
        3,
        10,
    )
    assert state["push"]["mode"] == "ok"

    async with HttpProvider("sms-local", Channel.SMS, gateways.http_url) as provider:
        with pytest.raises(ProviderError):
            await provider.send(OutboundMessage("n-1", Channel.SMS, to=PHONE, body=BODY))
    assert (await control(gateways.http_url, "GET")).json()["sms"]["remaining"] == 2

    await reset_faults(gateways.http_url)
    state = (await control(gateways.http_url, "GET")).json()
    assert (state["sms"]["mode"], state["sms"]["remaining"]) == ("ok", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "email", "mode": "429"}, "mode"),
        ({"mode": "5xx", "count": 0}, "count"),
        ({"mode": "5xx", "status": 404}, "status"),
        ({"mode": "ok", "status": 503}, "status"),
        ({"delay_ms": -1}, "delay_ms"),
        ({"channel": "inbox", "mode": "5xx"}, "channel"),
        ({"channel": "fax"}, "channel"),
        ({"mode": "slow"}, "mode"),
        ({"chanel": "sms"}, "chanel"),
    ],
)
async def test_a_bad_setting_is_refused_naming_its_field_and_changes_nothing(
    gateways: LocalGateways, body: dict[str, Any], field: str
) -> None:
    response = await control(gateways.http_url, "POST", body)

    assert response.status_code == 422
    assert field in {problem["field"] for problem in response.json()["detail"]}
    state = (await control(gateways.http_url, "GET")).json()
    assert {s["mode"] for s in state.values()} == {"ok"}


async def test_a_fault_without_a_channel_applies_to_every_channel(
    gateways: LocalGateways,
) -> None:
    await set_fault(gateways.http_url, mode="5xx", count=1)

    async with (
        HttpProvider("sms-local", Channel.SMS, gateways.http_url) as sms,
        HttpProvider("push-local", Channel.PUSH, gateways.http_url) as push,
    ):
        email = SmtpProvider("smtp-local", "127.0.0.1", gateways.smtp_port, "n@bank.example")
        messages: list[tuple[Provider, OutboundMessage]] = [
            (sms, OutboundMessage("n-1", Channel.SMS, to=PHONE, body=BODY)),
            (push, OutboundMessage("n-2", Channel.PUSH, to=DEVICE_TOKEN, body=BODY)),
            (email, OutboundMessage("n-3", Channel.EMAIL, to=EMAIL, body=BODY, subject=SUBJECT)),
        ]
        kinds = []
        for provider, message in messages:
            with pytest.raises(ProviderError) as failed:
                await provider.send(message)
            kinds.append(failed.value.kind)
        # 5xx over HTTP is the provider's trouble; a 5yz SMTP reply is a permanent refusal.
        assert kinds == [ErrorKind.TRANSIENT, ErrorKind.TRANSIENT, ErrorKind.PERMANENT]

        for provider, message in messages:  # the count is used up: normal again
            await provider.send(message)
    assert len(stored_records(gateways.state_dir, Channel.SMS)) == 1
    assert len(stored_records(gateways.state_dir, Channel.PUSH)) == 1
    assert len(stored_emails(gateways.state_dir)) == 1


async def test_the_gateway_process_stores_obeys_its_control_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    gateway = GatewayProcess(tmp_path / "state")
    gateway.start()
    try:
        async with HttpProvider("sms-local", Channel.SMS, gateway.http_url) as provider:
            await provider.send(OutboundMessage("n-1", Channel.SMS, to=PHONE, body=BODY))
            await set_fault(gateway.http_url, Channel.SMS, mode="5xx", count=1)
            with pytest.raises(ProviderError) as failed:
                await provider.send(OutboundMessage("n-2", Channel.SMS, to=PHONE, body=BODY))
            assert failed.value.kind is ErrorKind.TRANSIENT
        email = SmtpProvider("smtp-local", "127.0.0.1", gateway.smtp_port, "n@bank.example")
        await email.send(OutboundMessage("n-3", Channel.EMAIL, to=EMAIL, body=BODY, subject="s"))
    finally:
        code = gateway.stop()

    assert code == 0
    assert [r["out_id"] for r in stored_records(gateway.state_dir, Channel.SMS)] == ["n-1"]
    assert [str(m["Message-ID"]) for m in stored_emails(gateway.state_dir)] == [
        "<n-3@bank.example>"
    ]
