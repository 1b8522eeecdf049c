"""A send that fails permanently is parked on the dead-letter stream (ZHIKE_DLQ) as
`zhike dlq list` shows it, and replaying it (`zhike dlq replay`) re-dispatches the message once,
however often it is replayed. Real parts: nats-server, identity and the profile, the local SMS
gateway as an HTTP server."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from zhike.notifications.v1 import commands_pb2
from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways.testing import reset_faults, set_fault
from zhike_runtime.events import headers as h
from zhike_runtime.events.dead_letters import (
    DeadLetter,
    ReplayResult,
    list_dead_letters,
    replay,
)
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import eventually

from ..stack import PHONE, gateway_answers, notifications_stack

FAILED = model_pb.NOTIFICATION_STATUS_FAILED
SENT = model_pb.NOTIFICATION_STATUS_SENT
CONSUMER = "notifications-dispatch"
CODE = "938271"  # the passcode: message text, which no dead letter may carry


async def test_a_permanent_failure_is_dead_lettered_and_replaying_it_twice_sends_it_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with notifications_stack(
        nats_server, tmp_path, retry_base_seconds=0.2, retry_max_seconds=0.5
    ) as stack:
        js = stack.nats.jetstream()
        party_id = await stack.link("DLQ-1")
        await set_fault(stack.gateways.http_url, Channel.SMS, mode="4xx", status=400)

        with gateway_answers() as answers:
            sent = await stack.send(
                party_id, "otp_sms_v1", key=f"otp-{uuid.uuid4()}", values={"code": CODE}
            )
            await stack.status_becomes(sent.notification_id, FAILED)
            letters: list[DeadLetter] = []

            async def parked() -> bool:
                letters[:] = await list_dead_letters(js, CONSUMER)
                return bool(letters)

            await eventually(parked, timeout=20)
            [letter] = letters

            assert (letter.consumer, letter.original_subject) == (
                CONSUMER,
                "zhike.notifications.v1.redispatch",
            )
            assert letter.event_type == "zhike.notifications.v1.RedispatchNotification"
            assert letter.deliveries == "1"
            # The provider's error code, as the notification's failure records it.
            assert letter.last_error == "http_400:gateway_control"
            assert (
                letter.payload
                == commands_pb2.RedispatchNotification(
                    notification_id=sent.notification_id
                ).SerializeToString()
            )
            everything = repr(letter.headers) + letter.payload.decode("latin-1")
            assert PHONE[3:] not in everything
            assert CODE not in everything

            # The provider account is fixed; the operator replays the letter. The same letter is
            # republished once more before (a replay whose delete was lost, run again): its
            # event id is the same, and the inbox absorbs it.
            await reset_faults(stack.gateways.http_url)
            await js.publish(
                letter.original_subject,
                letter.payload,
                headers={
                    k: v
                    for k, v in letter.headers.items()
                    if k
                    not in {h.ORIGINAL_SUBJECT, h.LAST_ERROR, h.CONSUMER, h.DELIVERIES, h.MSG_ID}
                }
                | {h.MSG_ID: f"{letter.event_id}:replay:earlier"},
            )
            assert await replay(js, [letter]) == ReplayResult(replayed=1)
            done = await stack.status_becomes(sent.notification_id, SENT)
            # A redispatch of a notification no longer FAILED (another id: not the inbox's
            # doing) changes nothing either.
            await stack.publish(
                letter.original_subject,
                commands_pb2.RedispatchNotification(notification_id=sent.notification_id),
            )
            await asyncio.sleep(2)  # several dispatcher rounds

            assert done.attempts == 1  # counted afresh from the redispatch
            assert [sms["out_id"] for sms in stack.sms()] == [sent.notification_id]
            assert [(a.outcome, a.status) for a in answers.of(sent.notification_id)] == [
                ("fault", 400),
                ("stored", 200),
            ]
            assert (await stack.notification(sent.notification_id)).status == SENT
            assert await list_dead_letters(js, CONSUMER) == []
