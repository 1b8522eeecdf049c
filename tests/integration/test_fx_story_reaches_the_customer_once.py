"""The FX story, whole, across the four services as processes (`make run`'s way) and the local
SMS gateway: a customer with consent to marketing SMS receives USD 6,000 → offers decides the
USD wealth offer → notifications sends one SMS, with its opt-out line, to the gateway. Quiet
hours begin; USD 7,000 makes offers decide a second SMS offer, which notifications defers; the USD
leaves → both decisions are withdrawn, the deferred send is CANCELLED and never reaches the
gateway. The customer answers the first SMS "TD" → consent is withdrawn (ConsentWithdrawn), the
profile learns it and tells offers, and from then on no marketing SMS goes out on any path:
offers decides nothing when USD arrives again, and a SendNotification call is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeAlias

import grpc
import httpx
import nats
import pytest
import yaml
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.type.timeofday_pb2 import TimeOfDay
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from zhike.notifications.v1 import events_pb2 as notification_events
from zhike.notifications.v1 import notifications_pb2 as notification_model
from zhike.notifications.v1 import notifications_service_pb2 as notifications_pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as notifications_grpc
from zhike.offers.v1 import events_pb2 as offer_events
from zhike.profile.v1 import profile_pb2 as profile_model
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike.source.v1 import source_event_pb2 as pb
from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways.store import stored_records
from zhike_notifications.local_gateways.testing import GatewayProcess
from zhike_notifications.templates import DEFAULT_DIRECTORY as SHIPPED_TEMPLATES
from zhike_notifications.testing import midday_zone
from zhike_notifications.transport.webhook_signatures import sign
from zhike_offers.catalogue import DEFAULT_DIRECTORY as SHIPPED_CATALOGUE
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, eventually

from .conftest import ServiceProcess, serving
from .journeys import link, scalar
from .source_systems import (
    FX_RECORD,
    FX_SYSTEM,
    fact,
    fx_customer,
    fx_customer_record,
    ingest,
    usd_balance,
)

PHONE = "+8613812345678"  # the linked record's phone, as identity normalises it
FX_OFFER = "usd_fx_wealth"  # the shipped offer: USD 5,000 or more
# A second outbound SMS offer on USD, for a customer with more of it: decided later than the first.
PRIVATE_OFFER = "usd_fx_private_wealth"
PRIVATE_TEMPLATE = "offer_usd_fx_private_wealth_sms_v1"
OPT_OUT = "回复TD退订"
# The customer's quiet hours once he sets them (hours, his zone's wall time): they hold 12:xx, the
# time of day in his zone while the test runs, with room for a slow start.
QUIET_HOURS = (11, 15)
WEBHOOK_SECRET = "fx-story-webhook-secret"
SMS = notification_model.NOTIFICATION_CHANNEL_SMS
MARKETING = notification_model.NOTIFICATION_CATEGORY_MARKETING
Status: TypeAlias = notification_model.NotificationStatus.ValueType
OfferEvent = offer_events.OfferDecided | offer_events.OfferWithdrawn

PRIVATE_OFFER_FILE = {
    "offer_id": PRIVATE_OFFER,
    "version": 1,
    "names": {"zh-CN": "美元私享理财（6,500 美元起购）", "en": "USD 6,500 private wealth product"},
    "product_code": "WM_USD_PRIVATE_12M",
    "category": "marketing",
    "product_risk": 2,
    "channels": ["sms"],
    "outbound": True,
    "templates": {"sms": PRIVATE_TEMPLATE},
    "eligibility": ['assets["USD"] >= 6500.0'],
    "applicability": ['!("WM_USD_PRIVATE_12M" in products)'],
    "value": "800",
    "levers": "1",
    "contact_limits": {"max_contacts": 2, "window_days": 30, "cool_down_days": 90},
    "depends_on": ["assets", "risk", "consent"],
}
PRIVATE_TEMPLATE_FILE = {
    "template_id": PRIVATE_TEMPLATE,
    "channel": "sms",
    "category": "marketing",
    "topic": "wealth",
    "bodies": {
        "zh-CN": "尊敬的客户，您可选购美元私享理财产品，6,500 美元起购，期限 12 个月，详见手机银行。"
        "理财非存款，投资须谨慎。",
        "en": "USD private wealth product, 12 months, from USD 6,500: see our app. Not a deposit; "
        "investing has risks.",
    },
}


# --- what the services are given ------------------------------------------------------------


def offer_catalogue(directory: Path) -> Path:
    """The shipped USD offer and the second, higher one (a catalogue directory replaces the
    shipped catalogue whole)."""
    directory.mkdir()
    shutil.copy(SHIPPED_CATALOGUE / f"{FX_OFFER}.yaml", directory)
    (directory / f"{PRIVATE_OFFER}.yaml").write_text(
        yaml.safe_dump(PRIVATE_OFFER_FILE, allow_unicode=True), encoding="utf-8"
    )
    return directory


def message_templates(directory: Path) -> Path:
    """The shipped templates and the second offer's (a templates directory replaces them all)."""
    shutil.copytree(SHIPPED_TEMPLATES, directory, ignore=shutil.ignore_patterns("*.py", "__*"))
    (directory / f"{PRIVATE_TEMPLATE}.yaml").write_text(
        yaml.safe_dump(PRIVATE_TEMPLATE_FILE, allow_unicode=True), encoding="utf-8"
    )
    return directory


# --- what the bank's systems send, and what the test watches ----------------------------------


def preferences(
    event_id: str, sequence: int, zone: str, quiet: tuple[int, int] | None = None
) -> pb.SourceEvent:
    changed = pb.PreferenceChanged(language="zh-CN", time_zone=zone)
    if quiet is not None:
        changed.quiet_hours_start.CopyFrom(TimeOfDay(hours=quiet[0]))
        changed.quiet_hours_end.CopyFrom(TimeOfDay(hours=quiet[1]))
    return fact(FX_SYSTEM, FX_RECORD, event_id, sequence, preference_changed=changed)


@asynccontextmanager
async def events_on(nats_url: str, subject: str) -> AsyncIterator[asyncio.Queue[Message]]:
    """The events on `subject` (a wildcard of offers' or notifications' stream), decoded, from
    now on."""
    connection = await nats.connect(nats_url)
    received: asyncio.Queue[Message] = asyncio.Queue()
    decoders: dict[str, type[Message]] = {
        "zhike.offers.v1.offer_decided": offer_events.OfferDecided,
        "zhike.offers.v1.offer_withdrawn": offer_events.OfferWithdrawn,
        "zhike.notifications.v1.consent_withdrawn": notification_events.ConsentWithdrawn,
    }

    async def keep(message: Msg) -> None:
        decoder = decoders.get(message.subject)
        if decoder is not None:
            received.put_nowait(decoder.FromString(message.data))

    try:
        await connection.jetstream().subscribe(
            subject,
            cb=keep,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        yield received
    finally:
        await connection.close()


async def next_offer_event(
    events: asyncio.Queue[Message], kind: type[OfferEvent], offer_id: str, timeout: float = 20
) -> OfferEvent:
    """The next such event about `offer_id`; TimeoutError when none comes within `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        event = await asyncio.wait_for(events.get(), timeout=max(left, 0.001))
        if isinstance(event, kind) and event.offer_id == offer_id:
            return event


async def withdrawn_decisions(events: asyncio.Queue[Message], count: int) -> set[str]:
    withdrawn: set[str] = set()
    while len(withdrawn) < count:
        event = await asyncio.wait_for(events.get(), timeout=20)
        if isinstance(event, offer_events.OfferWithdrawn):
            withdrawn.add(event.decision_id)
    return withdrawn


class Notifications:
    """The notifications API as a bank's messaging system calls it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = notifications_grpc.NotificationsServiceStub(channel)

    async def get(self, notification_id: str) -> notification_model.Notification:
        try:
            answer: notifications_pb.GetNotificationResponse = await self._stub.GetNotification(
                notifications_pb.GetNotificationRequest(notification_id=notification_id),
                timeout=5,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:  # the event has not arrived yet
                return notification_model.Notification()
            raise
        return answer.notification

    async def becomes(
        self, notification_id: str, status: Status
    ) -> notification_model.Notification:
        async def reached() -> bool:
            return (await self.get(notification_id)).status == status

        try:
            await eventually(reached, timeout=20, interval=0.1)
        except AssertionError:
            last = await self.get(notification_id)
            wanted = notification_model.NotificationStatus.Name(status)
            raise AssertionError(f"{notification_id} is not {wanted} after 20 s: {last}") from None
        return await self.get(notification_id)

    async def of_party(self, party_id: str) -> dict[str, notification_model.Notification]:
        answer = await self._stub.ListNotifications(
            notifications_pb.ListNotificationsRequest(party_id=party_id, page_size=50), timeout=5
        )
        return {n.notification_id: n for n in answer.notifications}

    async def send_marketing(self, party_id: str, template_id: str) -> str:
        answer = await self._stub.SendNotification(
            notifications_pb.SendNotificationRequest(
                party_id=party_id,
                channel=SMS,
                template_id=template_id,
                idempotency_key=f"campaign-{uuid.uuid4()}",
                category=MARKETING,
            ),
            timeout=5,
        )
        return str(answer.notification_id)


async def reply_by_sms(webhook_port: int, in_reply_to: str, text: str) -> httpx.Response:
    """The local SMS provider's signed webhook: the customer's reply to one of our SMS."""
    body = json.dumps(
        {"in_reply_to": in_reply_to, "text": text, "at": dt.datetime.now(dt.UTC).isoformat()}
    ).encode()
    headers = sign(WEBHOOK_SECRET.encode(), f"reply-{uuid.uuid4()}", int(time.time()), body)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{webhook_port}") as client:
        return await client.post(
            "/webhooks/v1/local_sms/replies",
            content=body,
            headers=headers | {"Content-Type": "application/json"},
            timeout=10,
        )


# --- the stack -------------------------------------------------------------------------------


@pytest.fixture
def notifications_settings(tmp_path: Path) -> dict[str, str]:
    """Signed webhooks of local_sms (the TD reply), and the templates with the second offer's."""
    return {
        "ZHIKE_WEBHOOK_SECRETS": json.dumps({"local_sms": [WEBHOOK_SECRET]}),
        "ZHIKE_TEMPLATES_DIR": str(message_templates(tmp_path / "templates")),
    }


async def shown_preferences(
    channel: grpc.aio.Channel, party_id: str
) -> profile_model.Preferences | None:
    """The preferences the profile serves (what notifications reads when it sends), or None."""
    try:
        answer: profile_pb.GetProfileResponse = await profile_grpc.ProfileServiceStub(
            channel
        ).GetProfile(
            profile_pb.GetProfileRequest(
                party_id=party_id, read_mask=FieldMask(paths=["preferences"])
            ),
            timeout=5,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return answer.profile.preferences


async def shown_sms_marketing_consent(
    channel: grpc.aio.Channel, party_id: str
) -> profile_model.Consent | None:
    """The party's consent to marketing SMS as the profile serves it, or None."""
    answer: profile_pb.GetProfileResponse = await profile_grpc.ProfileServiceStub(
        channel
    ).GetProfile(
        profile_pb.GetProfileRequest(party_id=party_id, read_mask=FieldMask(paths=["consents"])),
        timeout=5,
    )
    for consent in answer.profile.consents:
        if consent.channel == pb.CONTACT_CHANNEL_SMS and (
            consent.purpose == pb.CONTACT_PURPOSE_MARKETING
        ):
            return consent
    return None


# --- the journey -----------------------------------------------------------------------------


async def test_one_consented_sms_a_deferred_one_cancelled_and_after_td_no_marketing_sms(
    tmp_path: Path,
    nats: NatsServer,
    services: dict[str, ServiceProcess],
    gateway: GatewayProcess,
    notifications: ServiceProcess,
) -> None:
    zone = midday_zone(12, dt.datetime.now(dt.UTC))
    services["offers"].extra_env |= {
        "ZHIKE_CATALOGUE_DIR": str(offer_catalogue(tmp_path / "catalogue")),
        # Room in the week's marketing budget for a third outbound decision, so that offers does
        # decide again after the TD (it has not heard of it) and notifications must refuse it.
        "ZHIKE_CONTACT_BUDGET": "7d:3,30d:6",
    }
    await serving(services["identity"], services["profile"], services["offers"], notifications)
    today = dt.datetime.now(dt.UTC).date()
    async with (
        authorised_channel(services["identity"].address) as identity_channel,
        authorised_channel(services["profile"].address) as profile_channel,
        authorised_channel(notifications.address, roles=("messaging_system",)) as messaging,
        events_on(nats.url, "zhike.offers.v1.>") as offers_told,
        events_on(nats.url, "zhike.notifications.v1.consent_withdrawn") as withdrawals,
    ):
        api = Notifications(messaging)
        customer = fx_customer_record()
        party_id = (await link(identity_channel, customer)).party_id
        await ingest(profile_channel, *fx_customer(today), preferences("preferences-1", 1, zone))

        async def mid_day_is_known() -> bool:
            shown = await shown_preferences(profile_channel, party_id)
            return shown is not None and shown.time_zone == zone

        async def consent_is_known() -> bool:
            # Notifications' own record of the consent (a projection of the profile's events):
            # what its gates read. In a bank the consent is older than the USD.
            return (
                scalar(
                    notifications.database_file,
                    f"SELECT count(*) FROM consent WHERE party_id = '{party_id}' AND given",
                )
                == 1
            )

        await eventually(mid_day_is_known, timeout=20)
        await eventually(consent_is_known, timeout=20)

        # USD 6,000 → offers decides the FX offer on SMS → one SMS at the gateway, opt-out line.
        await ingest(profile_channel, usd_balance("deposit-1", 2, 600000, 600000))
        first = await next_offer_event(offers_told, offer_events.OfferDecided, FX_OFFER)
        first_id = f"offer-{first.decision_id}"
        sent = await api.becomes(first_id, notification_model.NOTIFICATION_STATUS_SENT)
        [sms] = stored_records(gateway.state_dir, Channel.SMS)
        assert sms["out_id"] == first_id
        assert sms["to"] == PHONE
        assert sms["text"].rstrip().endswith(OPT_OUT)
        assert sent.provider == "local_sms"

        # Quiet hours now; USD 7,000 → a second SMS offer, deferred.
        await ingest(profile_channel, preferences("preferences-2", 2, zone, QUIET_HOURS))

        async def quiet_hours_are_known() -> bool:
            shown = await shown_preferences(profile_channel, party_id)
            return shown is not None and shown.quiet_hours_start.hours == QUIET_HOURS[0]

        await eventually(quiet_hours_are_known, timeout=20)
        await ingest(profile_channel, usd_balance("deposit-2", 3, 100000, 700000))
        second = await next_offer_event(offers_told, offer_events.OfferDecided, PRIVATE_OFFER)
        second_id = f"offer-{second.decision_id}"
        deferred = await api.becomes(second_id, notification_model.NOTIFICATION_STATUS_DEFERRED)
        assert deferred.deferred_until.ToDatetime(dt.UTC) > dt.datetime.now(dt.UTC)

        # USD 0 → both decisions withdrawn → the deferred send is cancelled, never sent.
        await ingest(profile_channel, usd_balance("withdrawal-1", 4, -700000, 0))
        assert await withdrawn_decisions(offers_told, 2) == {
            first.decision_id,
            second.decision_id,
        }
        cancelled = await api.becomes(second_id, notification_model.NOTIFICATION_STATUS_CANCELLED)
        assert cancelled.cancelled_by_decision_id == second.decision_id
        listed = await api.of_party(party_id)
        assert listed[second_id].status == notification_model.NOTIFICATION_STATUS_CANCELLED
        assert listed[second_id].cancelled_by_decision_id == second.decision_id
        # SENT, not DELIVERED: the local gateways post no delivery receipts.
        assert listed[first_id].status == notification_model.NOTIFICATION_STATUS_SENT
        assert listed[first_id].cancelled_by_decision_id == ""  # sent before the withdrawal
        assert [s["out_id"] for s in stored_records(gateway.state_dir, Channel.SMS)] == [first_id]

        # "TD" in reply to the SMS → consent withdrawn, and said so.
        answer = await reply_by_sms(
            int(notifications.extra_env["ZHIKE_WEBHOOK_PORT"]), sms["message_id"], "TD"
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"action": "unsubscribe"}
        withdrawn = await asyncio.wait_for(withdrawals.get(), timeout=20)
        assert isinstance(withdrawn, notification_events.ConsentWithdrawn)
        assert withdrawn.party_id == party_id
        assert withdrawn.channel == SMS
        assert withdrawn.purpose == notification_model.NOTIFICATION_PURPOSE_MARKETING
        assert withdrawn.notification_id == first_id

        # The profile learns it (and tells offers): its consent to marketing SMS is withdrawn,
        # with the reply as evidence.
        async def profile_shows_the_withdrawal() -> bool:
            consent = await shown_sms_marketing_consent(profile_channel, party_id)
            return consent is not None and not consent.given

        await eventually(profile_shows_the_withdrawal, timeout=20)
        shown = await shown_sms_marketing_consent(profile_channel, party_id)
        assert shown is not None
        assert shown.evidence.captured_where == "sms reply"

        # No marketing SMS on any path: USD arrives again and offers decides nothing (within
        # the seconds its first decision took well under one), and a campaign's send is refused.
        await ingest(profile_channel, usd_balance("deposit-3", 5, 600000, 600000))
        with pytest.raises(TimeoutError):
            await next_offer_event(offers_told, offer_events.OfferDecided, FX_OFFER, timeout=5)
        campaign_id = await api.send_marketing(party_id, "offer_usd_fx_wealth_sms_v1")
        refused = await api.becomes(campaign_id, notification_model.NOTIFICATION_STATUS_SUPPRESSED)
        assert refused.suppression.reason == notification_model.SUPPRESSION_REASON_NO_CONSENT
        assert [s["out_id"] for s in stored_records(gateway.state_dir, Channel.SMS)] == [first_id]

    # The customer's phone and the message's text reached the gateway and nothing else: no
    # service's log holds either.
    for service in (*services.values(), notifications):
        logged = service.log_file.read_text(encoding="utf-8", errors="replace")
        assert "13812345678" not in logged, service.name
        assert sms["text"] not in logged, service.name
