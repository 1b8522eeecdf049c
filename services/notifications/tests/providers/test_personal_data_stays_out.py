"""Sending, failing and being stored log the out-id, provider and error code, and never the
number, the address, the device token or the text; nor do the errors or the message's repr."""

from __future__ import annotations

import pytest

from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways import LocalGateways
from zhike_notifications.local_gateways.testing import set_fault
from zhike_notifications.providers import (
    HttpProvider,
    OutboundMessage,
    Provider,
    ProviderError,
    SmtpProvider,
)
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.processes import free_port

from .personal import BODY, DEVICE_TOKEN, EMAIL, FRAGMENTS, PHONE, SUBJECT


async def test_no_personal_data_in_logs_errors_or_reprs(gateways: LocalGateways) -> None:
    url = gateways.http_url
    sms = OutboundMessage("n-sms", Channel.SMS, to=PHONE, body=BODY)
    push = OutboundMessage("n-push", Channel.PUSH, to=DEVICE_TOKEN, body=BODY, subject=SUBJECT)
    mail = OutboundMessage("n-mail", Channel.EMAIL, to=EMAIL, body=BODY, subject=SUBJECT)
    texts: list[str] = [repr(sms), repr(push), repr(mail)]

    async def attempt(provider: Provider, message: OutboundMessage) -> None:
        try:
            accepted = await provider.send(message)
        except ProviderError as error:
            texts.extend([str(error), repr(error), error.code])
        else:
            texts.append(repr(accepted))

    with captured_json_logs() as lines:
        async with (
            HttpProvider("sms-local", Channel.SMS, url, timeout=0.3) as sms_provider,
            HttpProvider("push-local", Channel.PUSH, url) as push_provider,
            HttpProvider("sms-down", Channel.SMS, f"http://127.0.0.1:{free_port()}") as down,
        ):
            smtp = SmtpProvider("smtp-local", "127.0.0.1", gateways.smtp_port, "n@bank.example")
            slow_smtp = SmtpProvider(
                "smtp-local", "127.0.0.1", gateways.smtp_port, "n@bank.example", timeout=0.3
            )
            for provider, message in ((sms_provider, sms), (push_provider, push), (smtp, mail)):
                await attempt(provider, message)  # accepted
                await attempt(provider, message)  # already there
            await set_fault(url, mode="5xx", count=1)
            for provider, message in ((sms_provider, sms), (push_provider, push), (smtp, mail)):
                await attempt(provider, message)  # refused
            await set_fault(url, Channel.SMS, mode="4xx", count=1)
            await attempt(sms_provider, sms)
            await set_fault(url, delay_ms=1000, count=1)
            await attempt(sms_provider, OutboundMessage("n-late", Channel.SMS, to=PHONE, body=BODY))
            await attempt(slow_smtp, OutboundMessage("n-late", Channel.EMAIL, to=EMAIL, body=BODY))
            await attempt(down, sms)

    assert any('"out_id": "n-sms"' in line for line in lines)  # the sends were logged
    assert any("timeout" in text for text in texts)  # and the failures happened
    everything = "\n".join(lines + texts)
    for fragment in FRAGMENTS:
        assert fragment not in everything, fragment


@pytest.mark.parametrize("to", [PHONE, EMAIL])
def test_a_message_repr_shows_its_out_id_and_channel_only(to: str) -> None:
    message = OutboundMessage("n-1", Channel.SMS, to=to, body=BODY, subject=SUBJECT)
    assert repr(message) == "OutboundMessage(out_id='n-1', channel=<Channel.SMS: 'sms'>)"
