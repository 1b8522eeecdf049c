"""The profile's ProfileChanged reaches the offers service through a real nats-server
(consumer `offers-profile`), and its OfferDecided and OfferWithdrawn leave on ZHIKE_OFFERS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from google.protobuf.message import Message

from zhike.offers.v1 import events_pb2 as offers_events
from zhike.offers.v1 import offers_pb2, offers_service_pb2, offers_service_pb2_grpc
from zhike_offers.app import DEFINITION, STREAM
from zhike_offers.settings import OffersSettings
from zhike_offers.transport.event_codec import OFFER_DECIDED_SUBJECT, OFFER_WITHDRAWN_SUBJECT
from zhike_offers.transport.event_handlers import (
    NOTIFICATIONS_STREAM,
    PROFILE_STREAM,
    PROFILE_SUBJECTS,
)
from zhike_runtime.app import RunningService
from zhike_runtime.events import headers as h
from zhike_runtime.ids import new_id
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    running_service,
    wait_serving,
)

from ..profile_events import changed, risk, sms_marketing, usd

PROFILE_CHANGED_SUBJECT = "zhike.profile.v1.profile_changed"
DLQ_STREAM = "ZHIKE_DLQ"
EVENT_TYPES: dict[str, type[Message]] = {
    OFFER_DECIDED_SUBJECT: offers_events.OfferDecided,
    OFFER_WITHDRAWN_SUBJECT: offers_events.OfferWithdrawn,
}


@pytest.fixture
async def offers(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[RunningService[Any]]:
    # The profile and notifications own their streams (the consumers wait for them); here the
    # test stands in for them.
    client = await nats.connect(nats_server.url)
    try:
        await client.jetstream().add_stream(name=PROFILE_STREAM, subjects=list(PROFILE_SUBJECTS))
        await client.jetstream().add_stream(
            name=NOTIFICATIONS_STREAM, subjects=["zhike.notifications.v1.>"]
        )
    finally:
        await client.close()
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        yield service


async def publish(service: RunningService[OffersSettings], message: Message) -> str:
    """Publishes to JetStream exactly as the profile's outbox relay does."""
    event_id = new_id()
    await service.bus.js.publish(
        PROFILE_CHANGED_SUBJECT,
        message.SerializeToString(),
        headers={
            h.MSG_ID: event_id,
            h.EVENT_ID: event_id,
            h.EVENT_TYPE: message.DESCRIPTOR.full_name,
            h.CONTENT_TYPE: h.PROTOBUF,
        },
    )
    return event_id


async def offer_events(service: RunningService[OffersSettings]) -> list[Message]:
    """Every event on ZHIKE_OFFERS, in stream order."""
    js = service.bus.js
    info = await js.stream_info(STREAM.name)
    found: list[Message] = []
    for sequence in range(1, info.state.last_seq + 1):
        stored = await js.get_msg(STREAM.name, seq=sequence)
        assert stored.subject is not None
        assert stored.data is not None
        found.append(EVENT_TYPES[stored.subject].FromString(stored.data))
    return found


async def wait_for_events(service: RunningService[OffersSettings], count: int) -> list[Message]:
    async def published() -> bool:
        return len(await offer_events(service)) >= count

    await eventually(published, timeout=15)
    return await offer_events(service)


async def test_the_fx_story_decides_the_sms_offer_then_withdraws_it_when_the_usd_is_gone(
    offers: RunningService[OffersSettings],
) -> None:
    party_id = str(uuid.uuid4())
    await publish(offers, changed(party_id, 1, sms_marketing(), risk(3), usd(6000)))

    [decided] = await wait_for_events(offers, 1)
    assert isinstance(decided, offers_events.OfferDecided)
    assert decided.offer_id == "usd_fx_wealth"
    assert decided.channel == offers_pb2.CHANNEL_SMS
    assert decided.template_id == "offer_usd_fx_wealth_sms_v1"
    assert decided.party_id == party_id

    await publish(offers, changed(party_id, 2, usd(0)))

    _, withdrawn = await wait_for_events(offers, 2)
    assert isinstance(withdrawn, offers_events.OfferWithdrawn)
    assert withdrawn.decision_id == decided.decision_id
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_INELIGIBLE
    async with authorised_channel(f"127.0.0.1:{offers.grpc_port}") as channel:
        stub = offers_service_pb2_grpc.OffersServiceStub(channel)
        answer = await stub.DecideOffers(
            offers_service_pb2.DecideOffersRequest(
                party_id=party_id,
                channel=offers_pb2.CHANNEL_MOBILE_APP,
                placement="wealth_tab",
                max_offers=10,
            ),
            timeout=5,
        )
    assert "usd_fx_wealth" not in [d.offer_id for d in answer.decisions]


async def test_a_republished_profile_changed_is_applied_and_publishes_nothing(
    offers: RunningService[OffersSettings],
) -> None:
    party_id = str(uuid.uuid4())
    message = changed(party_id, 1, sms_marketing(), risk(3), usd(6000))
    await publish(offers, message)
    await wait_for_events(offers, 1)

    await publish(offers, message)  # a copy under another event id

    consumer = offers.consumers[0]

    async def both_applied() -> bool:
        return consumer.applied == 2

    await eventually(both_applied, timeout=10)
    assert len(await offer_events(offers)) == 1


async def test_a_malformed_profile_changed_is_dead_lettered_naming_the_field(
    offers: RunningService[OffersSettings],
) -> None:
    bad = changed("not-a-party", 1, usd(6000))
    event_id = await publish(offers, bad)

    async def dead_lettered() -> bool:
        info = await offers.bus.js.stream_info(DLQ_STREAM)
        return int(info.state.messages) == 1

    await eventually(dead_lettered, timeout=10)
    parked = await offers.bus.js.get_msg(DLQ_STREAM, seq=1)
    assert parked.headers is not None
    assert parked.headers[h.EVENT_ID] == event_id
    assert "ProfileChanged.party_id" in parked.headers[h.LAST_ERROR]
    assert parked.headers[h.CONSUMER] == "offers-profile"
    assert parked.data == bad.SerializeToString()


async def published_before_start(nats_server: NatsServer, *messages: Message) -> None:
    """On the profile's stream before the service starts: its first fetch takes them all."""
    client = await nats.connect(nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(name=PROFILE_STREAM, subjects=list(PROFILE_SUBJECTS))
        await js.add_stream(name=NOTIFICATIONS_STREAM, subjects=["zhike.notifications.v1.>"])
        for message in messages:
            event_id = new_id()
            await js.publish(
                PROFILE_CHANGED_SUBJECT,
                message.SerializeToString(),
                headers={
                    h.MSG_ID: event_id,
                    h.EVENT_ID: event_id,
                    h.EVENT_TYPE: message.DESCRIPTOR.full_name,
                    h.CONTENT_TYPE: h.PROTOBUF,
                },
            )
    finally:
        await client.close()


async def test_events_fetched_together_are_applied_as_one_batch(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    parties = [str(uuid.uuid4()) for _ in range(3)]
    await published_before_start(
        nats_server, *(changed(party, 1, sms_marketing(), risk(3), usd(6000)) for party in parties)
    )
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        events = await wait_for_events(service, 3)

        decided = [e for e in events if isinstance(e, offers_events.OfferDecided)]
        assert sorted(e.party_id for e in decided) == sorted(parties)
        consumer = service.consumers[0]
        assert (consumer.batches_applied, consumer.applied) == (1, 3)


async def test_a_malformed_event_in_a_batch_is_dead_lettered_alone_and_the_rest_applied(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    parties = [str(uuid.uuid4()) for _ in range(2)]
    good = [changed(party, 1, sms_marketing(), risk(3), usd(6000)) for party in parties]
    await published_before_start(nats_server, good[0], changed("not-a-party", 1), good[1])
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        events = await wait_for_events(service, 2)

        decided = [e for e in events if isinstance(e, offers_events.OfferDecided)]
        assert sorted(e.party_id for e in decided) == sorted(parties)
        consumer = service.consumers[0]

        async def settled() -> bool:
            return consumer.dead_lettered == 1

        await eventually(settled, timeout=10)
        # The batch failed as a whole; its events then went one by one.
        assert (consumer.batches_failed, consumer.applied) == (1, 2)


async def test_an_outbound_offer_created_through_the_api_reaches_existing_customers_by_the_sweep(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # USD 6,000 but no risk assessment: the default catalogue's USD offer is an investment one,
    # so nothing is decided for him until the bank adds an offer he suits.
    party_id = str(uuid.uuid4())
    await published_before_start(nats_server, changed(party_id, 1, sms_marketing(), usd(6000)))
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
        nats_url=nats_server.url,
        sweep_check_seconds=0.2,
    ) as service:
        await wait_serving(service.grpc_port)

        async def applied() -> bool:
            return service.consumers[0].applied == 1

        await eventually(applied, timeout=10)
        assert await offer_events(service) == []

        offer = offers_pb2.Offer(
            offer_id="usd_travel_insurance",
            names=offers_pb2.OfferNames(zh_cn="境外旅行保险", en="Travel insurance"),
            product_code="TRAVEL_INS",
            category=offers_pb2.OFFER_CATEGORY_MARKETING,
            channels=[offers_pb2.CHANNEL_SMS],
            outbound=True,
            templates=[
                offers_pb2.ChannelTemplate(channel=offers_pb2.CHANNEL_SMS, template_id="travel")
            ],
            eligibility=['assets["USD"] >= 5000.0'],
            value_cny="100",
        )
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = offers_service_pb2_grpc.OffersServiceStub(channel)
            await stub.CreateOffer(offers_service_pb2.CreateOfferRequest(offer=offer), timeout=10)

        [decided] = await wait_for_events(service, 1)
        assert isinstance(decided, offers_events.OfferDecided)
        assert (decided.party_id, decided.offer_id) == (party_id, "usd_travel_insurance")
