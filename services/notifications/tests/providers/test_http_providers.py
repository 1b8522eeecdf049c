"""SMS and push through the HTTP provider API to the local gateway: what is stored, and how each
failure is classified for the retry policy."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.retry import ErrorKind
from zhike_notifications.local_gateways import LocalGateways, running_gateways, stored_records
from zhike_notifications.local_gateways.testing import set_fault
from zhike_notifications.providers import HttpProvider, OutboundMessage, ProviderError
from zhike_notifications.providers.http import retry_after_delay
from zhike_runtime.testing.processes import free_port

from .personal import BODY, DEVICE_TOKEN, PHONE, SUBJECT


def sms(out_id: str = "n-1") -> OutboundMessage:
    return OutboundMessage(out_id, Channel.SMS, to=PHONE, body=BODY)


@pytest.fixture
async def sms_provider(gateways: LocalGateways) -> AsyncIterator[HttpProvider]:
    async with HttpProvider("sms-local", Channel.SMS, gateways.http_url, timeout=2.0) as provider:
        yield provider


async def test_an_accepted_sms_is_stored_with_its_out_id_number_and_text(
    gateways: LocalGateways, sms_provider: HttpProvider
) -> None:
    accepted = await sms_provider.send(sms("n-1"))

    [record] = stored_records(gateways.state_dir, Channel.SMS)
    assert (record["out_id"], record["to"], record["text"]) == ("n-1", PHONE, BODY)
    assert accepted.provider == "sms-local"
    assert accepted.provider_message_id == record["message_id"]
    assert (gateways.directory(Channel.SMS) / "n-1.json").exists()


async def test_the_same_out_id_twice_is_stored_once_and_answered_with_the_same_id(
    gateways: LocalGateways, sms_provider: HttpProvider
) -> None:
    first = await sms_provider.send(sms("n-1"))
    again = await sms_provider.send(sms("n-1"))
    other = await sms_provider.send(sms("n-2"))

    assert again.provider_message_id == first.provider_message_id
    assert other.provider_message_id != first.provider_message_id
    records = stored_records(gateways.state_dir, Channel.SMS)
    assert sorted(r["out_id"] for r in records) == ["n-1", "n-2"]


async def test_concurrent_sends_of_one_out_id_store_one_message_and_share_its_id(
    gateways: LocalGateways, sms_provider: HttpProvider
) -> None:
    answers = await asyncio.gather(*(sms_provider.send(sms("n-1")) for _ in range(20)))

    [record] = stored_records(gateways.state_dir, Channel.SMS)
    assert {a.provider_message_id for a in answers} == {record["message_id"]}


async def test_a_push_notification_is_stored_with_its_device_token_title_and_body(
    gateways: LocalGateways,
) -> None:
    async with HttpProvider("push-local", Channel.PUSH, gateways.http_url) as provider:
        accepted = await provider.send(
            OutboundMessage("p-1", Channel.PUSH, to=DEVICE_TOKEN, body=BODY, subject=SUBJECT)
        )

    [record] = stored_records(gateways.state_dir, Channel.PUSH)
    assert (record["device_token"], record["title"], record["body"]) == (
        DEVICE_TOKEN,
        SUBJECT,
        BODY,
    )
    assert accepted.provider_message_id == record["message_id"]
    assert stored_records(gateways.state_dir, Channel.SMS) == []


async def test_5xx_is_transient_stores_nothing_and_ends_with_the_fault_count(
    gateways: LocalGateways, sms_provider: HttpProvider
) -> None:
    await set_fault(gateways.http_url, Channel.SMS, mode="5xx", count=2)

    for _ in range(2):
        with pytest.raises(ProviderError) as failed:
            await sms_provider.send(sms("n-1"))
        assert failed.value.kind is ErrorKind.TRANSIENT
        assert failed.value.code == "http_503:gateway_control"
    assert stored_records(gateways.state_dir, Channel.SMS) == []

    await sms_provider.send(sms("n-1"))
    assert len(stored_records(gateways.state_dir, Channel.SMS)) == 1


async def test_a_chosen_5xx_status_is_transient(
    gateways: LocalGateways, sms_provider: HttpProvider
) -> None:
    await set_fault(gateways.http_url, Channel.SMS, mode="5xx", status=500, count=1)

    with pytest.raises(ProviderError) as failed:
        await sms_provider.send(sms())
    assert (failed.value.kind, failed.value.code) == (
        ErrorKind.TRANSIENT,
        "http_500:gateway_control",
    )


async def test_429_is_transient_and_carries_the_retry_after_the_gateway_asked_for(
    gateways: LocalGateways, sms_provider: HttpProvider
) -> None:
    await set_fault(gateways.http_url, Channel.SMS, mode="429", retry_after=7, count=1)

    with pytest.raises(ProviderError) as failed:
        await sms_provider.send(sms())
    assert failed.value.kind is ErrorKind.TRANSIENT
    assert failed.value.code.startswith("http_429")
    assert failed.value.retry_after == dt.timedelta(seconds=7)


@pytest.mark.parametrize("status", [None, 404, 422])
async def test_4xx_is_permanent_and_stores_nothing(
    gateways: LocalGateways, sms_provider: HttpProvider, status: int | None
) -> None:
    await set_fault(gateways.http_url, Channel.SMS, mode="4xx", status=status, count=1)

    with pytest.raises(ProviderError) as failed:
        await sms_provider.send(sms())
    assert failed.value.kind is ErrorKind.PERMANENT
    assert failed.value.code == f"http_{status or 400}:gateway_control"
    assert failed.value.retry_after is None
    assert stored_records(gateways.state_dir, Channel.SMS) == []


async def test_a_wrong_api_key_is_refused_permanently_and_the_right_one_accepted(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with running_gateways(state, api_key="right-key") as gateways:
        async with HttpProvider(
            "sms-local", Channel.SMS, gateways.http_url, api_key="wrong-key"
        ) as wrong:
            with pytest.raises(ProviderError) as failed:
                await wrong.send(sms())
        assert (failed.value.kind, failed.value.code) == (
            ErrorKind.PERMANENT,
            "http_401:unauthorised",
        )

        async with HttpProvider(
            "sms-local", Channel.SMS, gateways.http_url, api_key="right-key"
        ) as right:
            await right.send(sms())
        assert len(stored_records(state, Channel.SMS)) == 1


async def test_an_answer_later_than_the_timeout_is_ambiguous_and_the_resend_is_stored_once(
    gateways: LocalGateways,
) -> None:
    # The gateway stores the message, then answers after 1.5 s; the client gives up after 0.3 s:
    # the crash window between a provider's accept and our commit.
    await set_fault(gateways.http_url, Channel.SMS, delay_ms=1500, count=1)
    async with HttpProvider("sms-local", Channel.SMS, gateways.http_url, timeout=0.3) as impatient:
        with pytest.raises(ProviderError) as failed:
            await impatient.send(sms("n-1"))
    assert (failed.value.kind, failed.value.code) == (ErrorKind.AMBIGUOUS, "timeout")

    async with HttpProvider("sms-local", Channel.SMS, gateways.http_url) as provider:
        resent = await provider.send(sms("n-1"))

    [record] = stored_records(gateways.state_dir, Channel.SMS)
    assert resent.provider_message_id == record["message_id"]


async def test_a_refused_connection_is_transient() -> None:
    async with HttpProvider("sms-down", Channel.SMS, f"http://127.0.0.1:{free_port()}") as provider:
        with pytest.raises(ProviderError) as failed:
            await provider.send(sms())
    assert (failed.value.kind, failed.value.code) == (ErrorKind.TRANSIENT, "connection_refused")


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    assert retry_after_delay("120", now) == dt.timedelta(seconds=120)
    assert retry_after_delay("Mon, 02 Mar 2026 08:00:30 GMT", now) == dt.timedelta(seconds=30)
    assert retry_after_delay("Mon, 02 Mar 2026 07:00:00 GMT", now) == dt.timedelta(0)
    assert retry_after_delay("soon", now) is None
    assert retry_after_delay(None, now) is None


@pytest.mark.parametrize(
    "value", ["86401", "345600000000", "9" * 5000, "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_retry_after_is_read_as_a_day_at_most(value: str) -> None:
    now = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    assert retry_after_delay(value, now) == dt.timedelta(days=1)


def test_a_retry_after_of_a_non_ascii_digit_is_unreadable() -> None:
    now = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    assert retry_after_delay("\u00b2", now) is None  # "²", latin-1 in a header


def test_an_http_provider_sends_only_sms_or_push() -> None:
    with pytest.raises(ValueError, match="sms or push"):
        HttpProvider("mail", Channel.EMAIL, "http://127.0.0.1:1")
