"""Helpers beside `stack.py` for the API, event and webhook tests: a calendar where every day is a
working day, the notifications' published events read back from JetStream, provider webhooks
signed as a provider signs them, a consent published on the profile's stream, and what a
RESOURCE_EXHAUSTED answer says (`over_limit`).

The webhook server listens on `webhook_port`; the service does not report the port it bound, so
a test that posts webhooks picks a free one (`free_port`) and passes it in the settings.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import grpc
import httpx
from google.rpc import error_details_pb2
from nats.aio.client import Client as NATS

from zhike.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, party_pb2
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.profile.v1 import profile_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.transport.event_handlers import OFFERS_DURABLE, OFFERS_STREAM
from zhike_notifications.transport.webhook_signatures import sign
from zhike_runtime.grpc_errors import rich_status
from zhike_runtime.testing.services import authorised_channel, eventually

from .stack import CONSENT_TEXT, Stack, stamp

NOTIFICATIONS_STREAM = "ZHIKE_NOTIFICATIONS"


async def published(nats: NATS, subject: str) -> list[bytes]:
    """The payloads the notifications service has published under `subject` so far, read from
    its stream by a throwaway JetStream consumer."""
    subscription = await nats.jetstream().pull_subscribe(subject, stream=NOTIFICATIONS_STREAM)
    payloads: list[bytes] = []
    try:
        while True:
            try:
                batch = await subscription.fetch(100, timeout=0.3)
            except TimeoutError:  # nats' own and asyncio's: nothing more to fetch
                return payloads
            for message in batch:
                payloads.append(message.data)
                await message.ack()
    finally:
        await subscription.unsubscribe()


async def post_webhook(
    base_url: str,
    path: str,
    body: Mapping[str, Any],
    *,
    secret: str,
    delivery_id: str | None = None,
) -> httpx.Response:
    """A provider's webhook: `body` as JSON to `base_url` + `path`, signed with `secret` under
    `delivery_id` (a new one by default)."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = sign(secret.encode(), delivery_id or uuid.uuid4().hex, int(time.time()), raw)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.post(
            path, content=raw, headers={**headers, "Content-Type": "application/json"}
        )


async def link_person(stack: Stack, record_id: str, *, number: int) -> str:
    """A source record of a person of their own (name, phone and e-mail told apart by
    `number`: `Stack.link`'s records all share one phone and e-mail, so identity links them to
    one party), linked at identity; its party id."""
    async with authorised_channel(stack.address(stack.identity)) as channel:
        response = await identity_service_pb2_grpc.IdentityServiceStub(channel).LinkSourceRecord(
            identity_service_pb2.LinkSourceRecordRequest(
                source_record=party_pb2.SourceRecord(
                    key=party_pb2.SourceRecordKey(source_system="core", source_record_id=record_id),
                    full_name=f"测试客户{number}",
                    phone=f"139 0000 {number:04d}",
                    email=f"customer{number}@example.com",
                )
            ),
            timeout=10,
        )
    return str(response.party_id)


async def consumed(nats: NATS, stream: str, durable: str, timeout: float = 20) -> None:
    """Waits until the durable consumer has taken and acknowledged everything on `stream` so
    far (the service has handled every event published before the call)."""
    js = nats.jetstream()
    last = (await js.stream_info(stream)).state.last_seq

    async def caught_up() -> bool:
        info = await js.consumer_info(stream, durable)
        return bool(info.ack_floor.stream_seq >= last and info.num_ack_pending == 0)

    await eventually(caught_up, timeout=timeout)


async def offer_taken(stack: Stack, party_id: str, decision_id: str, **decision: Any) -> None:
    """OfferDecided published (`Stack.offer_decided`) and handled by notifications: its
    notification exists once this returns."""
    await stack.offer_decided(party_id, decision_id, **decision)
    await consumed(stack.nats, OFFERS_STREAM, OFFERS_DURABLE)


async def consent_on_profile_stream(stack: Stack, party_id: str, profile_version: int) -> None:
    """A ProfileChanged giving consent to marketing SMS, as the profile publishes it."""
    now = dt.datetime.now(dt.UTC)
    await stack.publish(
        "zhike.profile.v1.profile_changed",
        profile_events.ProfileChanged(
            party_id=party_id,
            profile_version=profile_version,
            change_time=stamp(now),
            cause=profile_events.CHANGE_CAUSE_SOURCE_EVENT,
            facts=[
                profile_events.ProfileFact(
                    consent_changed=profile_events.ConsentChanged(
                        channel=source_pb.CONTACT_CHANNEL_SMS,
                        purpose=source_pb.CONTACT_PURPOSE_MARKETING,
                        given=True,
                        evidence=profile_pb2.ConsentEvidence(
                            captured_where="branch 0101",
                            capture_time=stamp(now),
                            text_version=CONSENT_TEXT,
                        ),
                    )
                )
            ],
        ),
    )


def over_limit(error: grpc.aio.AioRpcError) -> tuple[dt.timedelta, list[str]]:
    """A RESOURCE_EXHAUSTED answer's retry delay and the limits it names."""
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
    status = rich_status(error)
    assert status is not None
    retry, quota = error_details_pb2.RetryInfo(), error_details_pb2.QuotaFailure()
    assert len(status.details) == 2
    assert status.details[0].Unpack(retry)
    assert status.details[1].Unpack(quota)
    return retry.retry_delay.ToTimedelta(), [v.description for v in quota.violations]
