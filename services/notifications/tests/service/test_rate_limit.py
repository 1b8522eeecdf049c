"""The per-party rate limit on SendNotification, over the real stack (identity, the profile and
notifications in-process on SQLite, a real nats-server, the local gateways), with short windows
so that a test waits seconds, not minutes: "4s:2,1h:3", two requests per party in any 4
seconds and three in any hour.

A request over the limit is RESOURCE_EXHAUSTED with when to retry and the limit named, and
nothing is stored for it; a replay of a request taken before gets its first answer, and is not
counted again; a passcode retried after the delay given is taken and sent; offers' decisions are
not requests. The burst across two replicas is tests/service/test_burst.py.

One stack serves the module: every test works on a party of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.notifications.v1 import notifications_service_pb2 as pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as pb_grpc
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, eventually

from ..flows import link_person, over_limit
from ..stack import NotificationsProcess, Stack, notifications_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

RATE_LIMIT = "4s:2,1h:3"
SHORT = "2 notifications per party per 4 seconds"
LONG = "3 notifications per party per hour"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        async with notifications_stack(
            server, tmp_path_factory.mktemp("stack"), party_rate_limit=RATE_LIMIT
        ) as running:
            yield running
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def api(stack: Stack) -> AsyncIterator[pb_grpc.NotificationsServiceStub]:
    """A messaging system's stub (the card centre, core banking)."""
    async with authorised_channel(
        stack.address(stack.notifications), roles=("messaging_system",)
    ) as channel:
        yield pb_grpc.NotificationsServiceStub(channel)


def passcode(party_id: str, key: str, code: str = "482913") -> pb.SendNotificationRequest:
    return pb.SendNotificationRequest(
        party_id=party_id,
        channel=model_pb.NOTIFICATION_CHANNEL_SMS,
        category=model_pb.NOTIFICATION_CATEGORY_TRANSACTIONAL,
        template_id="otp_sms_v1",
        idempotency_key=key,
        values={"code": code},
    )


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def listed(api: pb_grpc.NotificationsServiceStub, party_id: str) -> set[str]:
    page = await api.ListNotifications(
        pb.ListNotificationsRequest(party_id=party_id, page_size=50), timeout=10
    )
    return {n.notification_id for n in page.notifications}


async def stored_keys(stack: Stack, party_id: str) -> set[str]:
    """The idempotency keys of the party's notifications, as the database holds them."""
    assert not isinstance(stack.notifications, NotificationsProcess)
    async with stack.notifications.database.session() as session:
        keys = await session.scalars(
            sa.text("SELECT idempotency_key FROM notification WHERE party_id = :p"),
            {"p": party_id},
        )
        return set(keys)


async def test_a_request_over_the_limit_is_refused_with_when_to_retry_and_nothing_is_stored(
    stack: Stack, api: pb_grpc.NotificationsServiceStub
) -> None:
    party_id = await link_person(stack, "RATE-1", number=1)
    first = await api.SendNotification(passcode(party_id, "rate-1-a"), timeout=10)
    second = await api.SendNotification(passcode(party_id, "rate-1-b"), timeout=10)

    error = await refused(api.SendNotification(passcode(party_id, "rate-1-c"), timeout=10))

    delay, limits = over_limit(error)
    assert dt.timedelta(0) < delay <= dt.timedelta(seconds=4)
    assert limits == [SHORT]  # numbers only: never the party, never the code
    assert party_id not in (error.details() or "")
    assert "482913" not in (error.details() or "")
    assert await listed(api, party_id) == {first.notification_id, second.notification_id}
    assert await stored_keys(stack, party_id) == {"rate-1-a", "rate-1-b"}


async def test_a_replay_of_a_request_taken_gets_its_first_answer_while_the_limit_is_full(
    stack: Stack, api: pb_grpc.NotificationsServiceStub
) -> None:
    party_id = await link_person(stack, "RATE-2", number=2)
    first = await api.SendNotification(passcode(party_id, "rate-2-a"), timeout=10)
    await api.SendNotification(passcode(party_id, "rate-2-b"), timeout=10)
    over_limit(await refused(api.SendNotification(passcode(party_id, "rate-2-c"), timeout=10)))

    again = await api.SendNotification(passcode(party_id, "rate-2-a"), timeout=10)

    assert again.notification_id == first.notification_id
    # The same key for another request is still that caller's mistake, not the limit.
    mistake = await refused(
        api.SendNotification(passcode(party_id, "rate-2-a", code="111111"), timeout=10)
    )
    assert mistake.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert await stored_keys(stack, party_id) == {"rate-2-a", "rate-2-b"}


async def test_a_passcode_retried_after_the_delay_given_is_taken_and_sent(
    stack: Stack, api: pb_grpc.NotificationsServiceStub
) -> None:
    party_id = await link_person(stack, "RATE-3", number=3)
    first = await api.SendNotification(passcode(party_id, "rate-3-a"), timeout=10)
    await api.SendNotification(passcode(party_id, "rate-3-b"), timeout=10)
    delay, _ = over_limit(
        await refused(api.SendNotification(passcode(party_id, "rate-3-c", "731902"), timeout=10))
    )
    # Replays while refused: had they counted, the hour (3) would be full when the delay ends.
    for _ in range(3):
        await api.SendNotification(passcode(party_id, "rate-3-a"), timeout=10)

    await asyncio.sleep(delay.total_seconds())
    taken = await api.SendNotification(passcode(party_id, "rate-3-c", "731902"), timeout=10)

    sent = await stack.status_becomes(taken.notification_id, model_pb.NOTIFICATION_STATUS_SENT)
    assert sent.party_id == party_id
    assert taken.notification_id in {sms["out_id"] for sms in stack.sms()}
    # Now the hour is full: the wait named is the hour's, until the first request leaves it.
    long_delay, limits = over_limit(
        await refused(api.SendNotification(passcode(party_id, "rate-3-d"), timeout=10))
    )
    assert limits == [LONG]
    assert dt.timedelta(minutes=59) < long_delay <= dt.timedelta(hours=1)
    assert first.notification_id in await listed(api, party_id)
    assert await stored_keys(stack, party_id) == {"rate-3-a", "rate-3-b", "rate-3-c"}


async def test_offer_decisions_are_not_requests_and_do_not_count(
    stack: Stack, api: pb_grpc.NotificationsServiceStub
) -> None:
    party_id = await link_person(stack, "RATE-4", number=4)
    decisions = [str(uuid.uuid4()) for _ in range(3)]
    for decision_id in decisions:
        await stack.offer_decided(party_id, decision_id, offer_id=f"offer_{decision_id[:8]}")

    async def all_queued() -> bool:
        return len(await listed(api, party_id)) == len(decisions)

    await eventually(all_queued, timeout=20)

    # Three decisions stored in the last seconds: as requests they would fill both windows.
    first = await api.SendNotification(passcode(party_id, "rate-4-a"), timeout=10)
    second = await api.SendNotification(passcode(party_id, "rate-4-b"), timeout=10)

    assert {first.notification_id, second.notification_id} <= await listed(api, party_id)
