"""Failure modes issue 13 demands (its "Must hold"): provider failover and permanent errors, a
crash between the gateway's accept and our commit, quiet hours across a restart. Real parts
throughout: nats-server, identity and the profile, the local gateways as HTTP servers, and
notifications in-process or, where it must crash, as its own OS process."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

from zhike.notifications.v1 import events_pb2
from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways import running_gateways, stored_records
from zhike_notifications.local_gateways.testing import set_fault
from zhike_notifications.testing import midday_zone
from zhike_notifications.transport.event_codec import FAILED_SUBJECT
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import eventually

from ..stack import PHONE, gateway_answers, notifications_stack

SENT = model_pb.NOTIFICATION_STATUS_SENT
FAILED = model_pb.NOTIFICATION_STATUS_FAILED
DEFERRED = model_pb.NOTIFICATION_STATUS_DEFERRED
SERVICE = model_pb.NOTIFICATION_CATEGORY_SERVICE


def otp_key() -> str:
    return f"otp-{uuid.uuid4()}"


async def test_provider_a_answering_5xx_fails_over_to_b_which_stores_the_message_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with (
        running_gateways(tmp_path / "a") as gateway_a,
        running_gateways(tmp_path / "b") as gateway_b,
    ):
        providers = [
            {"name": "sms_a", "channel": "sms", "url": gateway_a.http_url},
            {"name": "sms_b", "channel": "sms", "url": gateway_b.http_url},
            {"name": "local_push", "channel": "push", "url": gateway_a.http_url},
            {
                "name": "local_email",
                "channel": "email",
                "url": f"smtp://127.0.0.1:{gateway_a.smtp_port}",
            },
        ]
        async with notifications_stack(
            nats_server, tmp_path, providers=providers, providers_sms=["sms_a", "sms_b"]
        ) as stack:
            party_id = await stack.link("FAILOVER-1")
            await set_fault(gateway_a.http_url, Channel.SMS, mode="5xx")

            with gateway_answers() as answers:
                sent = await stack.send(
                    party_id, "otp_sms_v1", key=otp_key(), values={"code": "482913"}
                )
                done = await stack.status_becomes(sent.notification_id, SENT)

            assert done.provider == "sms_b"
            assert done.attempts == 2
            assert stored_records(tmp_path / "a", Channel.SMS) == []
            [sms] = stored_records(tmp_path / "b", Channel.SMS)
            assert sms["out_id"] == sent.notification_id
            assert sms["to"] == PHONE
            # A refused it once (503), B stored it once: two calls in all.
            assert [(a.outcome, a.status) for a in answers.of(sent.notification_id)] == [
                ("fault", 503),
                ("stored", 200),
            ]


async def test_a_permanent_error_fails_the_message_after_one_call_and_is_never_retried(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # Backoff of at most half a second: a retry, were there one, would come well within the wait.
    async with notifications_stack(
        nats_server, tmp_path, retry_base_seconds=0.2, retry_max_seconds=0.5
    ) as stack:
        party_id = await stack.link("PERMANENT-1")
        failed_events = await stack.nats.subscribe(FAILED_SUBJECT)
        await set_fault(stack.gateways.http_url, Channel.SMS, mode="4xx", status=400)

        with gateway_answers() as answers:
            sent = await stack.send(party_id, "otp_sms_v1", key=otp_key(), values={"code": "1"})
            done = await stack.status_becomes(sent.notification_id, FAILED)
            event = events_pb2.NotificationFailed.FromString(
                (await failed_events.next_msg(timeout=10)).data
            )
            # Longer than the longest backoff and several dispatcher rounds.
            await asyncio.sleep(3)
            calls = answers.of(sent.notification_id)

        assert done.failure.startswith("permanent_error: http_400")
        assert done.attempts == 1
        assert event.notification_id == sent.notification_id
        assert event.failure == done.failure
        assert [(a.outcome, a.status) for a in calls] == [("fault", 400)]
        assert (await stack.notification(sent.notification_id)).status == FAILED
        assert stack.sms() == []


async def test_a_crash_between_the_gateways_accept_and_our_commit_leaves_one_message(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with notifications_stack(
        nats_server,
        tmp_path,
        as_process=True,
        dispatch_lease_seconds=2,
        provider_timeout_seconds=0.9,
    ) as stack:
        party_id = await stack.link("CRASH-1")
        # The next message is stored at once and answered 30 s later: notifications is killed
        # while it waits for that answer, with the message accepted and nothing committed.
        await set_fault(stack.gateways.http_url, Channel.SMS, mode="ok", delay_ms=30_000, count=1)

        with gateway_answers() as answers:
            sent = await stack.send(party_id, "otp_sms_v1", key=otp_key(), values={"code": "7"})

            async def stored_at_the_gateway() -> bool:
                return any(a.outcome == "stored" for a in answers.of(sent.notification_id))

            await eventually(stored_at_the_gateway, timeout=20)
            stack.kill_notifications()
            await stack.start_notifications()
            done = await stack.status_becomes(sent.notification_id, SENT, timeout=30)
            calls = answers.of(sent.notification_id)

        [sms] = stack.sms()
        assert sms["out_id"] == sent.notification_id
        assert done.provider == "local_sms"
        # Asked twice with the same out-id; the second time the gateway knew it.
        assert [a.outcome for a in calls] == ["stored", "duplicate"]


async def test_a_service_sms_deferred_by_quiet_hours_stays_deferred_across_a_restart_then_goes(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with notifications_stack(nats_server, tmp_path) as stack:
        record_id = "QUIET-1"
        party_id = await stack.link(record_id)
        zone_name = midday_zone()
        # Quiet hours from an hour ago to the next minute (wall times have minutes only), with
        # time enough before it for the restart.
        now = dt.datetime.now(dt.UTC)
        end = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        if end - now < dt.timedelta(seconds=10):
            end += dt.timedelta(minutes=1)
        zone = ZoneInfo(zone_name)
        start_wall = (now - dt.timedelta(hours=1)).astimezone(zone).time().replace(second=0)
        end_wall = end.astimezone(zone).time()
        await stack.set_preferences(
            record_id, party_id, time_zone=zone_name, quiet_hours=(start_wall, end_wall)
        )

        sent = await stack.send(
            party_id,
            "deposit_maturity_sms_v1",
            key=f"maturity-{uuid.uuid4()}",
            category=SERVICE,
            values={"account": "6217001234561234", "maturity_date": "2026-04-08"},
        )
        deferred = await stack.status_becomes(sent.notification_id, DEFERRED)
        assert deferred.deferred_until.ToDatetime(dt.UTC) == end

        await stack.restart_notifications()
        after_restart = await stack.notification(sent.notification_id)
        assert after_restart.status == DEFERRED
        assert after_restart.deferred_until == deferred.deferred_until
        assert stack.sms() == []

        wait = (end - dt.datetime.now(dt.UTC)).total_seconds()
        done = await stack.status_becomes(sent.notification_id, SENT, timeout=wait + 15)
        assert done.send_time.ToDatetime(dt.UTC) >= end
        [sms] = stack.sms()
        assert sms["out_id"] == sent.notification_id
