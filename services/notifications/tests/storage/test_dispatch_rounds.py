"""Rounds of the dispatcher over a real database (SQLite and PostgreSQL), with scripted providers
and directory and a clock the test moves: a retry runs the gates again and their verdict holds
(deferred until quiet hours end, refused when consent was withdrawn); a provider's Retry-After
waits no longer than the policy's longest wait; a message its template cannot render fails alone
while the round goes on; once an attempt went unanswered at a provider, the message never goes
to another."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.gates import ConsentRecord, GatePolicy
from zhike_notifications.domain.model import (
    Category,
    Channel,
    GiveUpReason,
    Message,
    Notification,
    Purpose,
    Status,
    SuppressionReason,
)
from zhike_notifications.domain.ports import (
    ConsentEntry,
    Outgoing,
    PartyContact,
    ProviderAnswer,
    StoredNotification,
)
from zhike_notifications.domain.retry import ErrorKind, RetryPolicy
from zhike_notifications.domain.service import (
    DispatchConfig,
    Dispatcher,
    Intake,
    OfferDecision,
    SendRequest,
    Templates,
)
from zhike_notifications.storage.repository import SqlNotificationsUnitOfWork
from zhike_notifications.storage.schema import notification
from zhike_notifications.templates import load_templates
from zhike_notifications.testing import REQUEST_DIGEST
from zhike_notifications.transport.event_codec import (
    FAILED_SUBJECT,
    SENT_SUBJECT,
    SUPPRESSED_SUBJECT,
    outgoing_event,
)
from zhike_runtime.db import Database
from zhike_runtime.errors import InvalidArgument
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.testing.logs import captured_json_logs

from .conftest import KEYS, Units

SHANGHAI = ZoneInfo("Asia/Shanghai")
PARTY = str(uuid.UUID(int=11))
OTHER_PARTY = str(uuid.UUID(int=12))
PROVIDER = "sms_a"
BACKUP = "sms_b"
DEPOSIT_VALUES = {"account": "6217001234561234", "maturity_date": "2026-04-08"}
HTTP_503 = ProviderAnswer(PROVIDER, error=ErrorKind.TRANSIENT, code="http_503")


def shanghai(day: int, hour: int, minute: int, second: int = 0) -> dt.datetime:
    """A moment of March 2026 on the bank's clock (Monday 2 March onward), in UTC."""
    return dt.datetime(2026, 3, day, hour, minute, second, tzinfo=SHANGHAI).astimezone(dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class ScriptedProvider:
    """Providers, in failover order, answering each send with the next scripted answer, then
    accepting; records what each was handed."""

    def __init__(self, *answers: ProviderAnswer, names: tuple[str, ...] = (PROVIDER,)) -> None:
        self.answers = list(answers)
        self.names = names
        self.handed: list[tuple[str, str]] = []  # (provider, out id)

    def providers(self, channel: Channel) -> tuple[str, ...]:
        return self.names

    async def send(self, provider: str, message: Outgoing) -> ProviderAnswer:
        self.handed.append((provider, message.out_id))
        if self.answers:
            return self.answers.pop(0)
        return ProviderAnswer(provider, provider_message_id=f"pm-{message.out_id}")


class Directory:
    """Every party has a phone and no preferences of his own (the bank's zone and quiet
    hours, 21:00-08:00, apply); counts the look-ups (identity audits each)."""

    def __init__(self) -> None:
        self.asked = 0

    async def contact(self, party_id: str) -> PartyContact:
        self.asked += 1
        return PartyContact(party_id, phone="+8613800000000")


@pytest.fixture
def units(database: Database) -> Units:
    # The service's own codec: the events recorded are the ones it publishes.
    return lambda: SqlNotificationsUnitOfWork(database, outgoing_event, None, KEYS)


def dispatcher(units: Units, provider: ScriptedProvider, clock: Clock) -> Dispatcher:
    config = DispatchConfig(
        gate_policy=GatePolicy(),
        calendar=load_calendar(None),
        retry_policies={channel: RetryPolicy(provider.names) for channel in Channel},
    )
    return Dispatcher(
        units,
        Templates(load_templates(None)),
        Directory(),
        provider,
        config,
        clock,
        unsubscribe_url=lambda ident: f"https://bank.example/u/{ident}",
        rng=random.Random(7),
    )


def intake(units: Units, clock: Clock) -> Intake:
    return Intake(units, Templates(load_templates(None)), clock, request_digest=REQUEST_DIGEST)


async def send(
    units: Units,
    clock: Clock,
    template_id: str,
    category: Category,
    values: Mapping[str, str],
    party_id: str = PARTY,
) -> str:
    request = SendRequest(
        party_id, Channel.SMS, template_id, f"key-{uuid.uuid4()}", category, None, values
    )
    return (await intake(units, clock).send(request)).notification.notification_id


async def read(units: Units, notification_id: str) -> Notification:
    async with units() as unit:
        stored = await unit.notifications.get(notification_id)
    assert stored is not None
    return stored.notification


async def published(database: Database) -> list[str]:
    async with database.engine.connect() as connection:
        return list(
            await connection.scalars(
                sa.select(outbox_event.c.subject).order_by(outbox_event.c.subject)
            )
        )


# --- a retry runs the gates again ------------------------------------------------------------


async def retry_due_in_quiet_hours(
    units: Units, provider: ScriptedProvider
) -> tuple[Clock, str, Dispatcher]:
    """A service SMS whose first attempt, two seconds before quiet hours, got a 503: its retry
    was planned within the next two seconds (the backoff's first round), and it is now a second
    past nine in Shanghai. With the clock, the notification and the rounds to come."""
    clock = Clock(shanghai(2, 20, 59, 58))
    notification_id = await send(
        units, clock, "deposit_maturity_sms_v1", Category.SERVICE, DEPOSIT_VALUES
    )
    rounds = dispatcher(units, provider, clock)
    assert await rounds.dispatch_due() == 1
    retry = (await read(units, notification_id)).retry
    assert retry is not None
    assert retry.at <= shanghai(2, 21, 0)
    clock.now = shanghai(2, 21, 0, 1)
    return clock, notification_id, rounds


async def test_a_retry_falling_in_quiet_hours_waits_for_their_end_instead_of_every_round(
    units: Units,
) -> None:
    provider = ScriptedProvider(HTTP_503)
    clock, notification_id, rounds = await retry_due_in_quiet_hours(units, provider)

    taken = 0
    for _ in range(20):
        taken += await rounds.dispatch_due()
        clock.advance(1)

    assert taken == 1  # the round that deferred it
    deferred = await read(units, notification_id)
    assert (deferred.status, deferred.deferred_until) == (Status.DEFERRED, shanghai(3, 8, 0))
    assert len(provider.handed) == 1


async def test_a_retry_deferred_by_quiet_hours_goes_out_when_they_end_as_the_planned_attempt(
    units: Units,
) -> None:
    provider = ScriptedProvider(HTTP_503)
    clock, notification_id, rounds = await retry_due_in_quiet_hours(units, provider)
    assert await rounds.dispatch_due() == 1

    clock.now = shanghai(3, 8, 0)
    assert await rounds.dispatch_due() == 1

    sent = await read(units, notification_id)
    assert (sent.status, sent.attempts) == (Status.SENT, 2)
    assert provider.handed == [(PROVIDER, notification_id)] * 2


async def test_a_retry_after_consent_was_withdrawn_is_suppressed_without_a_second_call(
    units: Units, database: Database
) -> None:
    provider = ScriptedProvider(HTTP_503)
    clock = Clock(shanghai(2, 10, 0))
    notification_id = await send(
        units, clock, "deposit_maturity_sms_v1", Category.SERVICE, DEPOSIT_VALUES
    )
    rounds = dispatcher(units, provider, clock)
    assert await rounds.dispatch_due() == 1
    async with units() as unit:
        refused = ConsentRecord(Channel.SMS, Purpose.SERVICE, given=False)
        await unit.consents.put([ConsentEntry(PARTY, refused, clock.now, 0)])
        await unit.commit()

    clock.advance(5)
    for _ in range(3):
        await rounds.dispatch_due()

    suppressed = await read(units, notification_id)
    assert suppressed.status is Status.SUPPRESSED
    assert suppressed.suppression is not None
    assert suppressed.suppression.reason is SuppressionReason.NO_CONSENT
    assert len(provider.handed) == 1
    assert await published(database) == [SUPPRESSED_SUBJECT]


# --- a provider's Retry-After -----------------------------------------------------------------


@pytest.mark.parametrize("seconds", [86_400, 345_600_000_000])
async def test_a_retry_after_past_the_longest_wait_plans_the_retry_at_the_longest_wait(
    units: Units, seconds: int
) -> None:
    clock = Clock(shanghai(2, 10, 0))
    passcode = await send(units, clock, "otp_sms_v1", Category.TRANSACTIONAL, {"code": "482913"})
    busy = ProviderAnswer(
        PROVIDER,
        error=ErrorKind.TRANSIENT,
        code="http_429",
        retry_after=dt.timedelta(seconds=seconds),
    )

    assert await dispatcher(units, ScriptedProvider(busy), clock).dispatch_due() == 1

    retry = (await read(units, passcode)).retry
    assert retry is not None
    assert retry.at == clock.now + RetryPolicy((PROVIDER,)).max_delay


# --- a message its template cannot render ----------------------------------------------------


async def test_an_offer_decision_whose_template_declares_fields_is_refused_and_nothing_queued(
    units: Units,
) -> None:
    clock = Clock(shanghai(2, 10, 0))
    decision = OfferDecision(
        decision_id=str(uuid.uuid4()),
        party_id=PARTY,
        offer_id="deposit_renewal",
        channel=Channel.SMS,
        template_id="deposit_maturity_sms_v1",
        category=Category.SERVICE,
        decided_at=clock.now,
    )

    async with units() as unit:
        with pytest.raises(InvalidArgument) as refused:
            await intake(units, clock).offer_decided(unit, decision)
        await unit.commit()

    assert [v.field for v in refused.value.violations] == ["template_id"]
    assert "account, maturity_date" in refused.value.violations[0].description
    async with units() as unit:
        assert await unit.notifications.of_party(PARTY, None, 10) == []


async def test_a_message_its_template_cannot_render_fails_alone_and_the_round_goes_on(
    units: Units, database: Database
) -> None:
    clock = Clock(shanghai(2, 10, 0))
    # Queued without the values its template declares (as an offer decision naming such a
    # template was, before intake refused one).
    unrenderable = StoredNotification(
        Notification(
            notification_id="offer-without-values",
            party_id=PARTY,
            channel=Channel.SMS,
            category=Category.SERVICE,
            template_id="deposit_maturity_sms_v1",
            created_at=clock.now,
        ),
        Message(
            party_id=PARTY,
            channel=Channel.SMS,
            category=Category.SERVICE,
            purpose=Purpose.SERVICE,
            template_id="deposit_maturity_sms_v1",
        ),
    )
    async with units() as unit:
        assert await unit.notifications.add(unrenderable)
        await unit.commit()
    clock.advance(1)
    passcode = await send(
        units, clock, "otp_sms_v1", Category.TRANSACTIONAL, {"code": "482913"}, OTHER_PARTY
    )
    provider = ScriptedProvider()

    assert await dispatcher(units, provider, clock).dispatch_due() == 2

    failed = await read(units, "offer-without-values")
    assert failed.status is Status.FAILED
    assert failed.gave_up is not None
    assert (failed.gave_up.reason, failed.gave_up.error) == (
        GiveUpReason.UNRENDERABLE,
        "template_values",
    )
    assert (await read(units, passcode)).status is Status.SENT
    assert provider.handed == [(PROVIDER, passcode)]
    # Announced as failed and parked as a dead letter, as any send that stopped.
    assert await published(database) == sorted(
        [FAILED_SUBJECT, SENT_SUBJECT, "zhike.dlq.notifications-dispatch"]
    )


# --- a row this release cannot read ------------------------------------------------------------


async def queue_unreadable(units: Units, database: Database, clock: Clock) -> str:
    """A notification of PARTY's as a newer release wrote it (with a channel this one does not
    know) before it was rolled back to this one; its id."""
    unreadable = await send(
        units, clock, "deposit_maturity_sms_v1", Category.SERVICE, DEPOSIT_VALUES
    )
    async with database.engine.begin() as connection:
        await connection.execute(
            sa.update(notification)
            .where(notification.c.notification_id == unreadable)
            .values(channel="CARRIER_PIGEON")
        )
    return unreadable


async def test_a_notification_failing_unexpectedly_holds_up_neither_the_party_nor_the_round(
    units: Units, database: Database
) -> None:
    clock = Clock(shanghai(2, 10, 0))
    unreadable = await queue_unreadable(units, database, clock)
    clock.advance(1)
    # The same party's passcode, queued behind it, and another party's.
    passcode = await send(units, clock, "otp_sms_v1", Category.TRANSACTIONAL, {"code": "482913"})
    other = await send(
        units, clock, "otp_sms_v1", Category.TRANSACTIONAL, {"code": "190377"}, OTHER_PARTY
    )
    provider = ScriptedProvider()

    with captured_json_logs() as lines:
        assert await dispatcher(units, provider, clock).dispatch_due() == 3

    assert sorted(provider.handed) == sorted([(PROVIDER, passcode), (PROVIDER, other)])
    assert (await read(units, passcode)).status is Status.SENT
    [reported] = [json.loads(line) for line in lines if "failed to dispatch" in line]
    assert (reported["severity"], reported["failed"], reported["notification_ids"]) == (
        "ERROR",
        1,
        [unreadable],
    )
    # Leased as the round took it: due again when the lease ends, not before.
    async with units() as unit:
        assert await unit.notifications.due(clock.now, 10) == []
        assert await unit.notifications.due(clock.now + dt.timedelta(seconds=61), 10) == [
            (unreadable, PARTY)
        ]


async def test_a_round_where_every_notification_fails_raises_so_the_loop_naps(
    units: Units, database: Database
) -> None:
    clock = Clock(shanghai(2, 10, 0))
    await queue_unreadable(units, database, clock)

    with pytest.raises(ValueError, match="CARRIER_PIGEON"):
        await dispatcher(units, ScriptedProvider(), clock).dispatch_due()


# --- a provider that may hold the message --------------------------------------------------


def answer(provider: str, error: ErrorKind, code: str) -> ProviderAnswer:
    return ProviderAnswer(provider, error=error, code=code)


async def rounds_until_settled(rounds: Dispatcher, clock: Clock) -> None:
    """Rounds a minute apart (past any backoff here) until none takes anything."""
    for _ in range(10):
        if not await rounds.dispatch_due():
            return
        clock.advance(60)
    raise AssertionError("still dispatching after ten rounds")


async def test_after_a_time_out_at_a_provider_a_later_error_there_is_retried_there_not_elsewhere(
    units: Units,
) -> None:
    provider = ScriptedProvider(
        answer(PROVIDER, ErrorKind.TRANSIENT, "http_503"),  # failed over to the backup at once
        answer(BACKUP, ErrorKind.AMBIGUOUS, "timeout"),  # the backup may have sent it
        answer(BACKUP, ErrorKind.TRANSIENT, "http_503"),
        names=(PROVIDER, BACKUP),
    )
    clock = Clock(shanghai(2, 10, 0))
    passcode = await send(units, clock, "otp_sms_v1", Category.TRANSACTIONAL, {"code": "482913"})

    await rounds_until_settled(dispatcher(units, provider, clock), clock)

    assert provider.handed == [(PROVIDER, passcode)] + [(BACKUP, passcode)] * 3
    sent = await read(units, passcode)
    assert sent.accepted is not None
    assert (sent.status, sent.accepted.provider) == (Status.SENT, BACKUP)


async def test_a_redispatch_after_a_time_out_at_a_provider_goes_to_that_provider(
    units: Units,
) -> None:
    provider = ScriptedProvider(
        answer(PROVIDER, ErrorKind.TRANSIENT, "http_503"),
        answer(BACKUP, ErrorKind.AMBIGUOUS, "timeout"),
        answer(BACKUP, ErrorKind.PERMANENT, "http_401"),  # say, its API key expired
        names=(PROVIDER, BACKUP),
    )
    clock = Clock(shanghai(2, 10, 0))
    passcode = await send(units, clock, "otp_sms_v1", Category.TRANSACTIONAL, {"code": "482913"})
    rounds = dispatcher(units, provider, clock)
    await rounds_until_settled(rounds, clock)
    assert (await read(units, passcode)).status is Status.FAILED

    async with units() as unit:
        assert await intake(units, clock).redispatch(unit, passcode)
        await unit.commit()
    await rounds_until_settled(rounds, clock)

    assert provider.handed[-1] == (BACKUP, passcode)
    assert (await read(units, passcode)).status is Status.SENT
