"""E-mail over SMTP to the local SMTP server: what is stored, the Message-ID made from the
out-id, and how each failure is classified for the retry policy."""

from __future__ import annotations

import pytest

from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.retry import ErrorKind
from zhike_notifications.local_gateways import LocalGateways, stored_emails
from zhike_notifications.local_gateways.testing import set_fault
from zhike_notifications.providers import OutboundMessage, ProviderError, SmtpProvider
from zhike_runtime.testing.processes import free_port

from .personal import BODY, EMAIL, SUBJECT

SENDER = "知客银行 <notify@bank.example>"
UNSUBSCRIBE = "https://bank.example/u/tok-81c2"


def mail(out_id: str = "n-1", to: str = EMAIL) -> OutboundMessage:
    return OutboundMessage(
        out_id, Channel.EMAIL, to=to, body=BODY, subject=SUBJECT, unsubscribe_url=UNSUBSCRIBE
    )


def smtp(gateways: LocalGateways, timeout: float = 2.0) -> SmtpProvider:
    return SmtpProvider("smtp-local", "127.0.0.1", gateways.smtp_port, SENDER, timeout=timeout)


async def test_an_email_is_stored_with_a_message_id_made_from_the_out_id(
    gateways: LocalGateways,
) -> None:
    accepted = await smtp(gateways).send(mail("n-1"))

    [stored] = stored_emails(gateways.state_dir)
    assert stored["Message-ID"] == "<n-1@bank.example>" == accepted.provider_message_id
    assert (stored["To"], stored["Subject"]) == (EMAIL, SUBJECT)
    assert stored["From"].addresses[0].addr_spec == "notify@bank.example"
    assert stored["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert stored["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert stored.get_content().strip() == BODY
    assert (gateways.directory(Channel.EMAIL) / "n-1@bank.example.eml").exists()


async def test_the_same_out_id_twice_is_stored_once(gateways: LocalGateways) -> None:
    provider = smtp(gateways)
    first = await provider.send(mail("n-1"))
    again = await provider.send(mail("n-1"))
    await provider.send(mail("n-2"))

    assert again == first
    ids = sorted(str(m["Message-ID"]) for m in stored_emails(gateways.state_dir))
    assert ids == ["<n-1@bank.example>", "<n-2@bank.example>"]


async def test_an_address_in_chinese_is_delivered_with_smtputf8(gateways: LocalGateways) -> None:
    await smtp(gateways).send(mail("n-1", to="刘建军@例子.中国"))

    [stored] = stored_emails(gateways.state_dir)
    assert stored["To"] == "刘建军@例子.中国"


@pytest.mark.parametrize(
    ("mode", "kind", "code"),
    [("4xx", ErrorKind.TRANSIENT, "smtp_451"), ("5xx", ErrorKind.PERMANENT, "smtp_554")],
)
async def test_smtp_4yz_is_transient_and_5yz_permanent_and_nothing_is_stored(
    gateways: LocalGateways, mode: str, kind: ErrorKind, code: str
) -> None:
    await set_fault(gateways.http_url, Channel.EMAIL, mode=mode, count=1)

    with pytest.raises(ProviderError) as failed:
        await smtp(gateways).send(mail())
    assert (failed.value.kind, failed.value.code) == (kind, code)
    assert stored_emails(gateways.state_dir) == []


async def test_a_late_250_is_ambiguous_and_the_resend_is_stored_once(
    gateways: LocalGateways,
) -> None:
    # The server stores the message, then answers after 1.5 s; the client gives up after 0.3 s.
    await set_fault(gateways.http_url, Channel.EMAIL, delay_ms=1500, count=1)
    with pytest.raises(ProviderError) as failed:
        await smtp(gateways, timeout=0.3).send(mail("n-1"))
    assert (failed.value.kind, failed.value.code) == (ErrorKind.AMBIGUOUS, "timeout")

    resent = await smtp(gateways).send(mail("n-1"))

    [stored] = stored_emails(gateways.state_dir)
    assert stored["Message-ID"] == resent.provider_message_id


async def test_a_refused_connection_is_transient() -> None:
    provider = SmtpProvider("smtp-down", "127.0.0.1", free_port(), SENDER)
    with pytest.raises(ProviderError) as failed:
        await provider.send(mail())
    assert (failed.value.kind, failed.value.code) == (ErrorKind.TRANSIENT, "connection_refused")


def test_an_out_id_that_cannot_be_a_message_id_is_refused_before_sending() -> None:
    for out_id in ("", "a b", "a..b", "a@b", "x" * 129):
        with pytest.raises(ValueError, match="out_id"):
            mail(out_id)
