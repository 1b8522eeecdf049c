"""What providers send back, over the real stack and the service's own webhook server: a signed
delivery receipt makes a sent SMS DELIVERED and announces it; a receipt that overtakes our record
of the send is 404 and its retry (the same delivery id) is taken once the send is recorded; a
"TD" reply withdraws consent to marketing SMS, announces it, and stops every later marketing SMS
while transactional messages still go out.

One stack serves the module (webhook secrets configured, every day a working day); each party's
time zone makes it early afternoon there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from zhike.notifications.v1 import events_pb2
from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways.testing import reset_faults, set_fault
from zhike_notifications.testing import every_day_working_calendar, midday_zone
from zhike_notifications.transport.event_codec import CONSENT_WITHDRAWN_SUBJECT, DELIVERED_SUBJECT
from zhike_runtime.testing.processes import NatsServer, free_port
from zhike_runtime.testing.services import eventually

from ..flows import link_person, offer_taken, post_webhook, published
from ..stack import Stack, notifications_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "whsec-local-sms-test"
RECEIPTS = "/webhooks/v1/local_sms/receipts"
REPLIES = "/webhooks/v1/local_sms/replies"


@dataclass
class Webhooks:
    stack: Stack
    url: str
    count: int = 200

    async def post(self, path: str, body: dict[str, Any], delivery_id: str | None = None) -> Any:
        return await post_webhook(self.url, path, body, secret=SECRET, delivery_id=delivery_id)

    async def consented(self) -> str:
        """A person who gave consent to marketing SMS, in a time zone where it is early
        afternoon, once notifications holds the consent."""
        self.count += 1
        record_id = f"HOOK-{self.count}"
        party_id = await link_person(self.stack, record_id, number=self.count)
        await self.stack.set_preferences(record_id, party_id, time_zone=midday_zone())
        await self.stack.give_consent(
            record_id, source_pb.CONTACT_CHANNEL_SMS, source_pb.CONTACT_PURPOSE_MARKETING
        )
        await self.stack.consent_arrives(party_id)
        return party_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hooks(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Webhooks]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    directory = tmp_path_factory.mktemp("stack")
    # The service does not tell the port its webhook server bound: it listens on one we chose.
    port = free_port()
    try:
        async with notifications_stack(
            server,
            directory,
            calendar_file=every_day_working_calendar(directory / "calendar.yaml"),
            webhook_port=port,
            webhook_secrets={"local_sms": [SECRET]},
        ) as running:
            yield Webhooks(running, f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def stored_sms(stack: Stack, notification_id: str) -> list[dict[str, Any]]:
    return [m for m in stack.sms() if m["out_id"] == notification_id]


async def otp(stack: Stack, party_id: str) -> str:
    answer = await stack.send(
        party_id, "otp_sms_v1", key=f"otp-{uuid.uuid4()}", values={"code": "482913"}
    )
    return answer.notification_id


async def marketing_sms(hooks: Webhooks, party_id: str) -> tuple[str, dict[str, Any]]:
    """An offer decided for the party, sent: its id and the SMS the gateway holds."""
    decision_id = f"d-{uuid.uuid4().hex}"
    await offer_taken(hooks.stack, party_id, decision_id)
    sent = await hooks.stack.status_becomes(
        f"offer-{decision_id}", model_pb.NOTIFICATION_STATUS_SENT
    )
    [sms] = stored_sms(hooks.stack, sent.notification_id)
    return sent.notification_id, sms


async def test_a_signed_delivery_receipt_makes_the_sms_delivered_and_announces_it(
    hooks: Webhooks,
) -> None:
    stack = hooks.stack
    party_id = await link_person(stack, "HOOK-RECEIPT", number=1)
    notification_id = await otp(stack, party_id)
    await stack.status_becomes(notification_id, model_pb.NOTIFICATION_STATUS_SENT)
    [sms] = stored_sms(stack, notification_id)

    answer = await hooks.post(
        RECEIPTS, {"provider_message_id": sms["message_id"], "kind": "delivered", "at": now()}
    )
    delivered = await stack.status_becomes(notification_id, model_pb.NOTIFICATION_STATUS_DELIVERED)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": True}
    assert delivered.HasField("deliver_time")

    async def announced() -> bool:
        events = [
            events_pb2.NotificationDelivered.FromString(p)
            for p in await published(stack.nats, DELIVERED_SUBJECT)
        ]
        return any(e.notification_id == notification_id for e in events)

    await eventually(announced, timeout=10)


async def test_a_receipt_that_overtook_the_send_is_404_and_its_retry_is_taken_later(
    hooks: Webhooks,
) -> None:
    stack = hooks.stack
    party_id = await link_person(stack, "HOOK-EARLY", number=2)
    # The gateway stores the message, then answers 3 s late: meanwhile its receipt arrives.
    await set_fault(stack.gateways.http_url, Channel.SMS, delay_ms=3000)
    try:
        notification_id = await otp(stack, party_id)

        async def stored() -> bool:
            return bool(stored_sms(stack, notification_id))

        await eventually(stored, timeout=10)
        [sms] = stored_sms(stack, notification_id)
        body = {"provider_message_id": sms["message_id"], "kind": "delivered", "at": now()}
        early = await hooks.post(RECEIPTS, body, delivery_id="receipt-early-1")
        status_then = (await stack.notification(notification_id)).status
    finally:
        await reset_faults(stack.gateways.http_url)
    await stack.status_becomes(notification_id, model_pb.NOTIFICATION_STATUS_SENT)

    retried = await hooks.post(RECEIPTS, body, delivery_id="receipt-early-1")

    assert early.status_code == 404, early.text
    assert early.json()["field"] == "provider_message_id"
    assert status_then == model_pb.NOTIFICATION_STATUS_QUEUED
    assert retried.status_code == 200, retried.text
    await stack.status_becomes(notification_id, model_pb.NOTIFICATION_STATUS_DELIVERED)
    replayed = await hooks.post(RECEIPTS, body, delivery_id="receipt-early-1")
    assert replayed.status_code == 409


async def reply_td(hooks: Webhooks, party_id: str) -> tuple[str, dict[str, Any]]:
    """A consented party sent one marketing SMS, who replied "TD" to it: the SMS's
    notification id and the gateway's record."""
    notification_id, sms = await marketing_sms(hooks, party_id)
    answer = await hooks.post(
        REPLIES, {"in_reply_to": sms["message_id"], "text": "TD", "at": now()}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"action": "unsubscribe"}
    return notification_id, sms


async def test_a_td_reply_withdraws_consent_announces_it_and_stops_marketing_sms(
    hooks: Webhooks,
) -> None:
    stack = hooks.stack
    party_id = await hooks.consented()
    first_id, _ = await reply_td(hooks, party_id)

    async def announced() -> bool:
        events = [
            events_pb2.ConsentWithdrawn.FromString(p)
            for p in await published(stack.nats, CONSENT_WITHDRAWN_SUBJECT)
        ]
        return any(
            e.party_id == party_id
            and e.channel == model_pb.NOTIFICATION_CHANNEL_SMS
            and e.purpose == model_pb.NOTIFICATION_PURPOSE_MARKETING
            and e.notification_id == first_id
            for e in events
        )

    await eventually(announced, timeout=10)

    # Another offer (not the same one: content dedup must not be what stops it), and the same
    # message asked for through SendNotification.
    decision_id = f"d-{uuid.uuid4().hex}"
    await offer_taken(stack, party_id, decision_id, offer_id="usd_fx_wealth_again")
    by_offer = await stack.status_becomes(
        f"offer-{decision_id}", model_pb.NOTIFICATION_STATUS_SUPPRESSED
    )
    asked = await stack.send(
        party_id,
        "offer_usd_fx_wealth_sms_v1",
        key=f"mkt-{uuid.uuid4()}",
        category=model_pb.NOTIFICATION_CATEGORY_MARKETING,
    )
    by_rpc = await stack.status_becomes(
        asked.notification_id, model_pb.NOTIFICATION_STATUS_SUPPRESSED
    )

    assert by_offer.suppression.reason == model_pb.SUPPRESSION_REASON_NO_CONSENT
    assert by_rpc.suppression.reason == model_pb.SUPPRESSION_REASON_NO_CONSENT
    phone = stored_sms(stack, first_id)[0]["to"]
    assert [m["out_id"] for m in stack.sms() if m["to"] == phone] == [first_id]


async def test_a_one_time_passcode_still_goes_out_after_td(hooks: Webhooks) -> None:
    stack = hooks.stack
    party_id = await hooks.consented()
    first_id, sms = await reply_td(hooks, party_id)

    notification_id = await otp(stack, party_id)
    await stack.status_becomes(notification_id, model_pb.NOTIFICATION_STATUS_SENT)

    assert [m["out_id"] for m in stack.sms() if m["to"] == sms["to"]] == [
        first_id,
        notification_id,
    ]
