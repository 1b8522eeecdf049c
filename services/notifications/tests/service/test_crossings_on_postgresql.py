"""Events that cross on PostgreSQL, where consumers and the dispatcher of several replicas commit
side by side (READ COMMITTED: each statement sees what was committed before it began). Each test
makes the other side commit at the worst moment, right after a read:

- a consent landing while a dispatch decides: the offer decided on that consent's profile
  version is waited for and sent, never refused;
- a withdrawal taken in while its decision is: the decision's notification ends cancelled, never
  queued to be sent;
- two replicas' batches of offers' events naming the same parties in opposite orders: both
  commit (the parties' locks are taken at once, in one order), neither is refused as a deadlock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.offers.v1 import events_pb2 as offer_events
from zhike_notifications.domain.model import Category, Channel, Status
from zhike_notifications.domain.ports import DecisionWithdrawal, HeldConsents
from zhike_notifications.domain.service import Intake, OfferDecision, Templates
from zhike_notifications.storage.repository import (
    SqlConsentStore,
    SqlNotificationsUnitOfWork,
    SqlWithdrawalStore,
)
from zhike_notifications.templates import load_templates
from zhike_notifications.testing import REQUEST_DIGEST, every_day_working_calendar, midday_zone
from zhike_notifications.transport import event_codec
from zhike_notifications.transport.event_handlers import offers_consumer
from zhike_runtime.db import Database
from zhike_runtime.events.consumer import EventContext, ReceivedEvent
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.processes import NatsServer, PostgresCluster
from zhike_runtime.testing.services import eventually, fixed_field_keys

from ..flows import consent_on_profile_stream, link_person, offer_taken
from ..stack import Stack, notifications_stack, stamp
from ..storage.conftest import MIGRATIONS

ENDED = (
    model_pb.NOTIFICATION_STATUS_SENT,
    model_pb.NOTIFICATION_STATUS_SUPPRESSED,
    model_pb.NOTIFICATION_STATUS_FAILED,
)
DECIDED_ON = 1000  # the profile version offers decided on (above the profile's own, for now)


async def test_a_consent_committed_right_after_the_dispatch_read_consents_is_waited_for_and_sent(
    nats_server: NatsServer,
    tmp_path: Path,
    postgres_cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with notifications_stack(
        nats_server,
        tmp_path,
        database_url=postgres_cluster.create_database(),
        calendar_file=every_day_working_calendar(tmp_path / "calendar.yaml"),
    ) as stack:
        party_id = await link_person(stack, "RACE-1", number=911)
        await stack.set_preferences("RACE-1", party_id, time_zone=midday_zone())
        read = SqlConsentStore.held
        first_read: list[HeldConsents] = []

        async def consent_lands_after_the_read(store: SqlConsentStore, asked: str) -> HeldConsents:
            held = await read(store, asked)
            if asked == party_id and not first_read:
                first_read.append(held)
                # The profile's consumer applies the consent and its version, and commits,
                # while this dispatch's transaction is still open.
                await consent_on_profile_stream(stack, party_id, DECIDED_ON)
                await stack.consent_arrives(party_id)
            return held

        monkeypatch.setattr(SqlConsentStore, "held", consent_lands_after_the_read)
        decision_id = f"d-{uuid.uuid4().hex}"

        await offer_taken(stack, party_id, decision_id, profile_version=DECIDED_ON)
        ended = await ended_as(stack, f"offer-{decision_id}")

        [before] = first_read
        assert before.entries == ()
        assert before.profile_version < DECIDED_ON
        assert model_pb.NotificationStatus.Name(ended.status) == "NOTIFICATION_STATUS_SENT"
        assert [sms["out_id"] for sms in stack.sms()] == [ended.notification_id]


async def ended_as(stack: Stack, notification_id: str) -> model_pb.Notification:
    """The notification once it is sent, suppressed or failed."""

    async def ended() -> bool:
        return (await stack.notification(notification_id)).status in ENDED

    await eventually(ended, timeout=20)
    return await stack.notification(notification_id)


@pytest.fixture
async def database(postgres_cluster: PostgresCluster) -> AsyncIterator[Database]:
    migrated = Database(postgres_cluster.create_database())
    await apply_migrations(migrated, MIGRATIONS)
    yield migrated
    await migrated.dispose()


@pytest.fixture
def units(database: Database) -> Callable[[], SqlNotificationsUnitOfWork]:
    keys = fixed_field_keys()
    return lambda: SqlNotificationsUnitOfWork(database, event_codec.outgoing_event, None, keys)


@pytest.fixture
def intake(units: Callable[[], SqlNotificationsUnitOfWork]) -> Intake:
    return Intake(
        units,
        Templates(load_templates()),
        lambda: dt.datetime.now(dt.UTC),
        request_digest=REQUEST_DIGEST,
    )


async def test_a_withdrawal_committed_while_its_decision_is_taken_in_leaves_it_cancelled(
    database: Database,
    units: Callable[[], SqlNotificationsUnitOfWork],
    intake: Intake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two replicas share the offers consumer: one takes OfferDecided in while the other takes
    # its OfferWithdrawn. The withdrawal is made to run right after the decision's replica
    # found no withdrawal, and before it stores the notification.
    party_id = str(uuid.uuid4())
    decision = OfferDecision(
        decision_id=str(uuid.uuid4()),
        party_id=party_id,
        offer_id="usd_fx_wealth",
        channel=Channel.SMS,
        template_id="offer_usd_fx_wealth_sms_v1",
        category=Category.MARKETING,
        decided_at=dt.datetime.now(dt.UTC),
        profile_version=3,
    )

    async def withdraw() -> None:
        withdrawal = DecisionWithdrawal(decision.decision_id, party_id, dt.datetime.now(dt.UTC))
        async with units() as unit:
            await intake.offer_withdrawn(unit, withdrawal)
            await unit.commit()

    read = SqlWithdrawalStore.get
    crossing: list[asyncio.Task[None]] = []

    async def withdrawn_after_the_read(
        store: SqlWithdrawalStore, decision_id: str
    ) -> DecisionWithdrawal | None:
        found = await read(store, decision_id)
        if not crossing:
            crossing.append(asyncio.create_task(withdraw()))
            await committed_or_waiting(crossing[0], database)
        return found

    monkeypatch.setattr(SqlWithdrawalStore, "get", withdrawn_after_the_read)
    async with units() as unit:
        await intake.offer_decided(unit, decision)
        await unit.commit()
    await crossing[0]

    async with units() as unit:
        stored = await unit.notifications.get(f"offer-{decision.decision_id}")
    assert stored is not None
    assert stored.notification.status is Status.CANCELLED


async def test_two_batches_withdrawing_for_the_same_parties_in_opposite_orders_both_commit(
    database: Database,
    units: Callable[[], SqlNotificationsUnitOfWork],
    intake: Intake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two replicas' fetches from the offers stream: one holds P1's withdrawal then P2's, the
    # other P2's then P1's. The first is made to pause after its first event until the second
    # is in its way; locking party by party, each would then wait for the other.
    spec = offers_consumer(intake, units)
    assert spec.batch_handler is not None
    batch_handler = spec.batch_handler
    [withdrawn] = [h for h in spec.handlers if h.message_type is offer_events.OfferWithdrawn]
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    decision_ids: list[str] = []

    def withdrawal(party_id: str) -> offer_events.OfferWithdrawn:
        decision_ids.append(str(uuid.uuid4()))
        return offer_events.OfferWithdrawn(
            decision_id=decision_ids[-1],
            party_id=party_id,
            withdraw_time=stamp(dt.datetime.now(dt.UTC)),
        )

    async def batch(party_ids: Sequence[str]) -> None:
        async with units() as unit:
            events = [
                ReceivedEvent(
                    withdrawal(party_id),
                    EventContext(str(uuid.uuid4()), "OfferWithdrawn", "s", 1, unit),
                    withdrawn,
                )
                for party_id in party_ids
            ]
            await batch_handler(unit, events)
            await unit.commit()

    add = SqlWithdrawalStore.add
    other: list[asyncio.Task[None]] = []

    async def the_other_batch_runs_after_the_first_event(
        store: SqlWithdrawalStore, taken: DecisionWithdrawal
    ) -> bool:
        added = await add(store, taken)
        if not other:
            other.append(asyncio.create_task(batch([second, first])))
            await committed_or_waiting(other[0], database)
        return added

    monkeypatch.setattr(SqlWithdrawalStore, "add", the_other_batch_runs_after_the_first_event)
    await batch([first, second])
    await other[0]

    async with units() as unit:
        kept = [await unit.withdrawals.get(decision_id) for decision_id in decision_ids]
    assert sorted(w.party_id for w in kept if w is not None) == sorted(
        [first, first, second, second]
    )


async def committed_or_waiting(task: asyncio.Task[None], database: Database) -> None:
    """Until `task` has committed, or waits for a lock (held by the caller's unit)."""

    async def settled() -> bool:
        if task.done():
            return True
        async with database.session() as session:
            waiting = await session.scalar(
                sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            )
        return bool(waiting)

    await eventually(settled, timeout=20)
