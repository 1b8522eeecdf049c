"""The FX story, through offers: a customer with consent to marketing SMS and a valid C3 risk
assessment receives USD 6,000 → offers decides the USD wealth product outbound on SMS
(OfferDecided, for notifications to send); he moves the USD out → offers withdraws that very
decision (OfferWithdrawn, so a queued SMS is cancelled) and DecideOffers no longer returns the
offer on any channel. Identity, profile and offers run as processes, as `make run` starts them."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from zhike.offers.v1 import events_pb2 as offer_events
from zhike.offers.v1 import offers_pb2
from zhike.offers.v1 import offers_service_pb2 as offers_pb
from zhike.offers.v1 import offers_service_pb2_grpc as offers_grpc
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel

from .conftest import ServiceProcess, serving
from .journeys import link
from .source_systems import fx_customer, fx_customer_record, ingest, usd_balance

OFFER = "usd_fx_wealth"
OfferEvent = offer_events.OfferDecided | offer_events.OfferWithdrawn


@asynccontextmanager
async def offer_events_from_now(nats_url: str) -> AsyncIterator[asyncio.Queue[OfferEvent]]:
    """OfferDecided and OfferWithdrawn as notifications sees them, from now on."""
    connection = await nats.connect(nats_url)
    received: asyncio.Queue[OfferEvent] = asyncio.Queue()

    async def keep(message: Msg) -> None:
        if message.subject == "zhike.offers.v1.offer_decided":
            received.put_nowait(offer_events.OfferDecided.FromString(message.data))
        elif message.subject == "zhike.offers.v1.offer_withdrawn":
            received.put_nowait(offer_events.OfferWithdrawn.FromString(message.data))

    try:
        await connection.jetstream().subscribe(
            "zhike.offers.v1.>",
            cb=keep,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        yield received
    finally:
        await connection.close()


async def next_about(
    events: asyncio.Queue[OfferEvent], party_id: str, kind: type[OfferEvent]
) -> OfferEvent:
    while True:
        event = await asyncio.wait_for(events.get(), timeout=20)
        if isinstance(event, kind) and event.party_id == party_id and event.offer_id == OFFER:
            return event


async def offered(
    channel: grpc.aio.Channel, party_id: str, offer_channel: offers_pb2.Channel.ValueType
) -> list[str]:
    response = await offers_grpc.OffersServiceStub(channel).DecideOffers(
        offers_pb.DecideOffersRequest(party_id=party_id, channel=offer_channel, max_offers=5),
        timeout=5,
    )
    return [decision.offer_id for decision in response.decisions]


async def notifications_stream(nats_url: str) -> None:
    """Notifications is not run here, but its stream is declared: offers consumes from it, and
    waits for it before it consumes anything."""
    connection = await nats.connect(nats_url)
    try:
        await connection.jetstream().add_stream(
            name="ZHIKE_NOTIFICATIONS", subjects=["zhike.notifications.v1.>"]
        )
    finally:
        await connection.close()


async def test_usd_arrives_decides_the_fx_offer_on_sms_and_leaving_withdraws_that_decision(
    services: dict[str, ServiceProcess], nats: NatsServer
) -> None:
    await notifications_stream(nats.url)
    await serving(services["identity"], services["profile"], services["offers"])
    today = dt.datetime.now(dt.UTC).date()
    async with (
        authorised_channel(services["identity"].address) as identity_channel,
        authorised_channel(services["profile"].address) as profile_channel,
        authorised_channel(services["offers"].address) as offers_channel,
        offer_events_from_now(nats.url) as told,
    ):
        customer = fx_customer_record()
        party_id = (await link(identity_channel, customer)).party_id
        await ingest(
            profile_channel, *fx_customer(today), usd_balance("deposit-1", 2, 600000, 600000)
        )
        decided = await next_about(told, party_id, offer_events.OfferDecided)
        assert isinstance(decided, offer_events.OfferDecided)
        assert decided.channel == offers_pb2.CHANNEL_SMS
        assert decided.template_id == "offer_usd_fx_wealth_sms_v1"
        assert OFFER in await offered(offers_channel, party_id, offers_pb2.CHANNEL_MOBILE_APP)

        await ingest(profile_channel, usd_balance("withdrawal-1", 3, -600000, 0))
        withdrawn = await next_about(told, party_id, offer_events.OfferWithdrawn)

        assert isinstance(withdrawn, offer_events.OfferWithdrawn)
        assert withdrawn.decision_id == decided.decision_id
        assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_INELIGIBLE
        assert OFFER not in await offered(offers_channel, party_id, offers_pb2.CHANNEL_MOBILE_APP)
        assert OFFER not in await offered(offers_channel, party_id, offers_pb2.CHANNEL_SMS)
