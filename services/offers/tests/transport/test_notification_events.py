"""Notifications' NotificationSent and NotificationDelivered reach the offers service through a
real nats-server (consumer `offers-notifications` on ZHIKE_NOTIFICATIONS) and become the party's
contacts: the message of offers' own outbound decision is not counted again, any other offer's
message counts once toward the marketing budget, a failed or suppressed message counts nothing,
and a malformed event is dead-lettered naming its field."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from zhike.notifications.v1 import events_pb2 as pb
from zhike.notifications.v1 import notifications_pb2
from zhike.offers.v1 import events_pb2 as offers_events
from zhike.offers.v1 import offers_pb2, offers_service_pb2, offers_service_pb2_grpc
from zhike_offers.app import DEFINITION
from zhike_offers.settings import OffersSettings
from zhike_offers.transport.event_handlers import (
    NOTIFICATIONS_DURABLE,
    NOTIFICATIONS_STREAM,
    PROFILE_STREAM,
    PROFILE_SUBJECTS,
)
from zhike_runtime.app import RunningService
from zhike_runtime.events import headers as h
from zhike_runtime.events.consumer import EventConsumer
from zhike_runtime.ids import new_id
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    running_service,
    wait_serving,
)

from ..profile_events import changed, risk, sms_marketing, usd
from .test_profile_events import publish, wait_for_events

SUBJECTS = {
    pb.NotificationSent: "zhike.notifications.v1.notification_sent",
    pb.NotificationDelivered: "zhike.notifications.v1.notification_delivered",
    pb.NotificationFailed: "zhike.notifications.v1.notification_failed",
    pb.NotificationSuppressed: "zhike.notifications.v1.notification_suppressed",
}
SMS = notifications_pb2.NOTIFICATION_CHANNEL_SMS
PUSH = notifications_pb2.NOTIFICATION_CHANNEL_PUSH
MARKETING = notifications_pb2.NOTIFICATION_CATEGORY_MARKETING
FX = "usd_fx_wealth"  # marketing, outbound on sms
TRAVEL_CARD = "fx_travel_debit_card"  # marketing, outbound on push
BUDGET = "budget: 2 marketing contacts in the last 7 days (limit 2)"


@pytest.fixture
async def offers(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[RunningService[Any]]:
    # The profile and notifications own their streams; here the test stands in for them.
    client = await nats.connect(nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(name=PROFILE_STREAM, subjects=list(PROFILE_SUBJECTS))
        await js.add_stream(name=NOTIFICATIONS_STREAM, subjects=["zhike.notifications.v1.>"])
    finally:
        await client.close()
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        yield service


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC))
    return stamp


async def told(service: RunningService[OffersSettings], message: Message) -> str:
    """Publishes to JetStream exactly as notifications' outbox relay does."""
    event_id = new_id()
    await service.bus.js.publish(
        SUBJECTS[type(message)],
        message.SerializeToString(),
        headers={
            h.MSG_ID: event_id,
            h.EVENT_ID: event_id,
            h.EVENT_TYPE: message.DESCRIPTOR.full_name,
            h.CONTENT_TYPE: h.PROTOBUF,
        },
    )
    return event_id


def consumer(service: RunningService[OffersSettings]) -> EventConsumer:
    [found] = [c for c in service.consumers if c.spec.durable == NOTIFICATIONS_DURABLE]
    return found


async def applied(service: RunningService[OffersSettings], count: int) -> None:
    notifications = consumer(service)

    async def done() -> bool:
        return notifications.applied >= count

    await eventually(done, timeout=15)


async def fx_budget_explanation(service: RunningService[OffersSettings], party_id: str) -> str:
    """Why DecideOffers on sms holds the FX offer back ("" when it does not)."""
    async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        answer = await offers_service_pb2_grpc.OffersServiceStub(channel).DecideOffers(
            offers_service_pb2.DecideOffersRequest(
                party_id=party_id, channel=offers_pb2.CHANNEL_SMS, max_offers=5, explain=True
            ),
            timeout=5,
        )
    for item in answer.not_chosen:
        if item.offer_id == FX and item.reason == offers_pb2.NOT_CHOSEN_REASON_SUPPRESSED:
            return str(item.detail)
    return ""


async def decided_fx(service: RunningService[OffersSettings], party_id: str) -> str:
    await publish(service, changed(party_id, 1, sms_marketing(), risk(3), usd(6000)))
    [decided] = await wait_for_events(service, 1)
    assert isinstance(decided, offers_events.OfferDecided)
    assert decided.offer_id == FX
    return str(decided.decision_id)


async def test_a_sent_message_counts_once_toward_the_budget_with_its_repeat_and_receipt(
    offers: RunningService[OffersSettings],
) -> None:
    party_id = str(uuid.uuid4())
    decision_id = await decided_fx(offers, party_id)  # one marketing contact: the decision's
    fx_id, campaign_id = f"offer-{decision_id}", str(uuid.uuid4())
    fx = pb.NotificationSent(
        notification_id=fx_id,
        party_id=party_id,
        channel=SMS,
        category=MARKETING,
        decision_id=decision_id,
        offer_id=FX,
        send_time=now(),
    )
    fx_delivered = pb.NotificationDelivered(
        notification_id=fx_id,
        party_id=party_id,
        channel=SMS,
        decision_id=decision_id,
        offer_id=FX,
        deliver_time=now(),
    )
    for message in (fx, fx, fx_delivered):
        await told(offers, message)
    await applied(offers, 3)
    # The decision's SMS is the decision's contact, not a second one.
    assert await fx_budget_explanation(offers, party_id) == ""

    # A campaign's push naming an offer offers did not decide outbound: one more, counted once.
    campaign = pb.NotificationSent(
        notification_id=campaign_id,
        party_id=party_id,
        channel=PUSH,
        category=MARKETING,
        offer_id=TRAVEL_CARD,
        send_time=now(),
    )
    await told(offers, campaign)
    await told(offers, campaign)
    await applied(offers, 5)
    assert await fx_budget_explanation(offers, party_id) == BUDGET


async def test_failed_and_suppressed_messages_count_nothing(
    offers: RunningService[OffersSettings],
) -> None:
    party_id = str(uuid.uuid4())
    decision_id = await decided_fx(offers, party_id)
    for offer_id, decided in ((FX, decision_id), (TRAVEL_CARD, "")):
        await told(
            offers,
            pb.NotificationFailed(
                notification_id=str(uuid.uuid4()),
                party_id=party_id,
                channel=PUSH,
                decision_id=decided,
                offer_id=offer_id,
                failure="E_PERMANENT",
                fail_time=now(),
            ),
        )
        await told(
            offers,
            pb.NotificationSuppressed(
                notification_id=str(uuid.uuid4()),
                party_id=party_id,
                channel=PUSH,
                decision_id=decided,
                offer_id=offer_id,
                suppress_time=now(),
            ),
        )
    # One campaign message after them: applied means everything before it was seen.
    await told(
        offers,
        pb.NotificationSent(
            notification_id=str(uuid.uuid4()),
            party_id=party_id,
            channel=PUSH,
            category=MARKETING,
            offer_id=TRAVEL_CARD,
            send_time=now(),
        ),
    )
    await applied(offers, 1)
    notifications = consumer(offers)
    assert (notifications.applied, notifications.dead_lettered) == (1, 0)
    # The decision and the one message sent: the budget's 2, no more.
    assert await fx_budget_explanation(offers, party_id) == BUDGET


async def test_a_malformed_notification_event_is_dead_lettered_naming_the_field(
    offers: RunningService[OffersSettings],
) -> None:
    bad = pb.NotificationDelivered(
        notification_id=str(uuid.uuid4()),
        party_id="not-a-party",
        channel=SMS,
        offer_id=FX,
        deliver_time=now(),
    )
    event_id = await told(offers, bad)

    async def dead_lettered() -> bool:
        info = await offers.bus.js.stream_info("ZHIKE_DLQ")
        return int(info.state.messages) == 1

    await eventually(dead_lettered, timeout=10)
    parked = await offers.bus.js.get_msg("ZHIKE_DLQ", seq=1)
    assert parked.headers is not None
    assert parked.headers[h.EVENT_ID] == event_id
    assert "NotificationDelivered.party_id" in parked.headers[h.LAST_ERROR]
    assert parked.headers[h.CONSUMER] == NOTIFICATIONS_DURABLE
    assert parked.data == bad.SerializeToString()
