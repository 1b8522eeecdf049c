"""Two dispatchers (two replicas) on one database, over SQLite and PostgreSQL: a message is handed
to its provider once, even when one replica's round reaches it after its lease ran out and the
other replica's round has taken it meanwhile, and a provider that hangs past the lease is given
up on before another replica could take the attempt up."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter

from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.gates import GatePolicy
from zhike_notifications.domain.model import AttemptFailure, Category, Channel, Status
from zhike_notifications.domain.ports import Outgoing, PartyContact, ProviderAnswer
from zhike_notifications.domain.retry import RetryPolicy
from zhike_notifications.domain.service import (
    DispatchConfig,
    Dispatcher,
    Intake,
    SendRequest,
    Templates,
)
from zhike_notifications.templates import load_templates
from zhike_notifications.testing import REQUEST_DIGEST

from .conftest import Units

LEASE = dt.timedelta(seconds=2)
PARTY = str(uuid.UUID(int=7))


class SlowProvider:
    """Answers each send after `seconds`, recording which message it was handed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.handed: Counter[str] = Counter()

    def providers(self, channel: Channel) -> tuple[str, ...]:
        return ("sms_gateway",)

    async def send(self, provider: str, message: Outgoing) -> ProviderAnswer:
        self.handed[message.out_id] += 1
        await asyncio.sleep(self.seconds)
        return ProviderAnswer(provider, provider_message_id=f"pm-{message.out_id}")


class Directory:
    async def contact(self, party_id: str) -> PartyContact:
        return PartyContact(party_id, phone="+8613800000000")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def dispatcher(units: Units, provider: SlowProvider) -> Dispatcher:
    config = DispatchConfig(
        gate_policy=GatePolicy(),
        calendar=load_calendar(None),
        retry_policies={channel: RetryPolicy(("sms_gateway",)) for channel in Channel},
        lease=LEASE,
    )
    return Dispatcher(
        units,
        Templates(load_templates(None)),
        Directory(),
        provider,
        config,
        now,
        unsubscribe_url=lambda ident: f"https://bank.example/u/{ident}",
    )


async def passcodes(units: Units, count: int) -> list[str]:
    intake = Intake(units, Templates(load_templates(None)), now, request_digest=REQUEST_DIGEST)
    ids = []
    for n in range(count):
        sent = await intake.send(
            SendRequest(
                PARTY,
                Channel.SMS,
                "otp_sms_v1",
                f"otp-{uuid.uuid4()}",
                Category.TRANSACTIONAL,
                None,
                {"code": str(100000 + n)},
            )
        )
        ids.append(sent.notification.notification_id)
    return ids


async def test_a_message_whose_lease_ran_out_in_a_round_is_sent_once_across_two_replicas(
    units: Units,
) -> None:
    # Five sends of 0.3 lease each, one after another: the first replica reaches the fifth at
    # 1.2 leases, after the round's lease on it ran out and the second replica's round (at
    # 1.05) took it. Each send stays well inside half a lease, where a call is cut short.
    provider = SlowProvider(0.3 * LEASE.total_seconds())
    ids = await passcodes(units, 5)
    first, second = dispatcher(units, provider), dispatcher(units, provider)

    async def second_round() -> int:
        await asyncio.sleep(1.05 * LEASE.total_seconds())
        return await second.dispatch_due()

    await asyncio.gather(first.dispatch_due(), second_round())

    assert provider.handed == Counter(ids)


async def test_a_provider_hanging_past_half_the_lease_is_an_ambiguous_timeout(
    units: Units,
) -> None:
    provider = SlowProvider(3 * LEASE.total_seconds())
    [notification_id] = await passcodes(units, 1)

    assert await dispatcher(units, provider).dispatch_due() == 1

    async with units() as unit:
        stored = await unit.notifications.get(notification_id)
    assert stored is not None
    assert stored.sending is None  # the attempt is over: no other replica takes it up
    assert stored.notification.status is Status.QUEUED
    assert stored.notification.last_failure == AttemptFailure(1, "timeout")
    # It may have gone out: the next attempt is on the same provider (with the same out-id).
    assert stored.notification.retry is not None
    assert (stored.notification.retry.attempt, stored.notification.retry.provider) == (
        2,
        "sms_gateway",
    )
