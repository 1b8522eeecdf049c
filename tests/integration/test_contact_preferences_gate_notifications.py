"""The customer's switches, set at offers, gate what notifications sends, across the four
services as processes: offers publishes ContactPreferencesChanged through its outbox, and
notifications keeps the newest. Do-not-contact suppresses a marketing SMS; an SMS opt-out
suppresses a service SMS while a one-time passcode still goes out; a late copy of the older
announcement changes nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from nats import connect as connect_to_nats

from zhike.notifications.v1 import notifications_pb2 as model
from zhike.notifications.v1 import notifications_service_pb2 as notifications_pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as notifications_grpc
from zhike.offers.v1 import offers_pb2
from zhike.offers.v1 import offers_service_pb2 as offers_pb
from zhike.offers.v1 import offers_service_pb2_grpc as offers_grpc
from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways.store import stored_records
from zhike_notifications.local_gateways.testing import GatewayProcess
from zhike_runtime.events import headers as h
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, eventually

from .conftest import ServiceProcess, serving
from .journeys import link, scalar
from .source_systems import fx_customer, fx_customer_record, ingest

SUBJECT = "zhike.offers.v1.contact_preferences_changed"


def held_version(notifications: ServiceProcess, party_id: str) -> int:
    """The preferences version notifications' gates read for the party (0: none)."""
    return scalar(
        notifications.database_file,
        f"SELECT coalesce(max(version), 0) FROM contact_preferences WHERE party_id = '{party_id}'",
    )


async def reaches(notifications: ServiceProcess, party_id: str, version: int) -> None:
    async def held() -> bool:
        return held_version(notifications, party_id) == version

    await eventually(held, timeout=20, interval=0.1)


async def ends(
    stub: notifications_grpc.NotificationsServiceStub, notification_id: str, status: int
) -> model.Notification:
    found = model.Notification()

    async def reached() -> bool:
        nonlocal found
        answer = await stub.GetNotification(
            notifications_pb.GetNotificationRequest(notification_id=notification_id), timeout=5
        )
        found = answer.notification
        return bool(found.status == status)

    await eventually(reached, timeout=20, interval=0.1)
    return found


async def test_offers_switches_suppress_marketing_and_an_opted_out_channel_but_not_an_otp(
    tmp_path: Path,
    nats: NatsServer,
    services: dict[str, ServiceProcess],
    gateway: GatewayProcess,
    notifications: ServiceProcess,
) -> None:
    await serving(services["identity"], services["profile"], services["offers"], notifications)
    async with (
        authorised_channel(services["identity"].address) as identity_channel,
        authorised_channel(services["profile"].address) as profile_channel,
        authorised_channel(services["offers"].address) as offers_channel,
        authorised_channel(notifications.address, roles=("messaging_system",)) as messaging,
    ):
        offers = offers_grpc.OffersServiceStub(offers_channel)
        sender = notifications_grpc.NotificationsServiceStub(messaging)

        async def send(template_id: str, category: int, **values: str) -> str:
            answer = await sender.SendNotification(
                notifications_pb.SendNotificationRequest(
                    party_id=party_id,
                    channel=model.NOTIFICATION_CHANNEL_SMS,
                    template_id=template_id,
                    idempotency_key=f"pref-{uuid.uuid4()}",
                    category=category,  # type: ignore[arg-type]
                    values=values,
                ),
                timeout=5,
            )
            return str(answer.notification_id)

        customer = fx_customer_record()
        party_id = (await link(identity_channel, customer)).party_id
        # Consent to marketing SMS, with its evidence: without it the consent gate, which comes
        # first, would refuse the marketing SMS before do-not-contact is looked at.
        await ingest(profile_channel, *fx_customer(dt.datetime.now(dt.UTC).date()))

        async def consent_is_known() -> bool:
            return (
                scalar(
                    notifications.database_file,
                    f"SELECT count(*) FROM consent WHERE party_id = '{party_id}' AND given",
                )
                == 1
            )

        await eventually(consent_is_known, timeout=20)

        # Do-not-contact at offers → a marketing SMS is suppressed for it.
        await offers.SetContactPreferences(
            offers_pb.SetContactPreferencesRequest(party_id=party_id, do_not_contact=True),
            timeout=10,
        )
        await reaches(notifications, party_id, 1)
        marketing = await send("offer_usd_fx_wealth_sms_v1", model.NOTIFICATION_CATEGORY_MARKETING)
        refused = await ends(sender, marketing, model.NOTIFICATION_STATUS_SUPPRESSED)
        assert refused.suppression.reason == model.SUPPRESSION_REASON_DO_NOT_CONTACT

        # Contact allowed again, but no SMS except transactional ones.
        await offers.SetContactPreferences(
            offers_pb.SetContactPreferencesRequest(
                party_id=party_id,
                do_not_contact=False,
                opted_out_channels=offers_pb2.OptedOutChannels(channels=[offers_pb2.CHANNEL_SMS]),
            ),
            timeout=10,
        )
        await reaches(notifications, party_id, 2)
        maturity = await send(
            "deposit_maturity_sms_v1",
            model.NOTIFICATION_CATEGORY_SERVICE,
            account="6217001234561234",
            maturity_date="2026-04-08",
        )
        otp = await send("otp_sms_v1", model.NOTIFICATION_CATEGORY_TRANSACTIONAL, code="482913")
        refused = await ends(sender, maturity, model.NOTIFICATION_STATUS_SUPPRESSED)
        await ends(sender, otp, model.NOTIFICATION_STATUS_SENT)
        assert refused.suppression.reason == model.SUPPRESSION_REASON_CHANNEL_OPTED_OUT
        assert [sms["out_id"] for sms in stored_records(gateway.state_dir, Channel.SMS)] == [otp]

        # Offers' first announcement arrives again, late, under a new id (a republish from a
        # backup); then another party's, behind it in the stream.
        connection = await connect_to_nats(nats.url)
        try:
            js = connection.jetstream()
            first = await js.get_msg("ZHIKE_OFFERS", seq=1, subject=SUBJECT, next=True)
            again = str(uuid.uuid4())
            await js.publish(
                SUBJECT,
                first.data or b"",
                headers=dict(first.headers or {}) | {h.MSG_ID: again, h.EVENT_ID: again},
            )
        finally:
            await connection.close()
        someone_else = str(uuid.uuid4())
        await offers.SetContactPreferences(
            offers_pb.SetContactPreferencesRequest(party_id=someone_else, do_not_contact=True),
            timeout=10,
        )
        await reaches(notifications, someone_else, 1)
        assert held_version(notifications, party_id) == 2
