"""A burst of 1,000 marketing sends for one consented party, with 20 one-time passcodes among
them, spread over two notifications replicas on one PostgreSQL database: exactly the frequency
cap reaches the gateway (the party's lock holds across replicas), every passcode does."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.notifications.v1 import notifications_service_pb2 as pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as pb_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.templates import DEFAULT_DIRECTORY
from zhike_notifications.testing import every_day_working_calendar, midday_zone
from zhike_runtime.app import RunningService
from zhike_runtime.testing.processes import NatsServer, PostgresCluster
from zhike_runtime.testing.services import authorised_channel, eventually

from ..stack import Stack, notifications_stack

MARKETING_TEMPLATES = 4  # distinct contents, so the cap shows, not only content dedup
MARKETING_SENDS = 1000
PASSCODES = 20
CAP = 2  # the default frequency cap: 2 marketing messages in 7 days ("7:2,30:6")
MARKETING = model_pb.NOTIFICATION_CATEGORY_MARKETING
TRANSACTIONAL = model_pb.NOTIFICATION_CATEGORY_TRANSACTIONAL
SENT = model_pb.NOTIFICATION_STATUS_SENT
SUPPRESSED = model_pb.NOTIFICATION_STATUS_SUPPRESSED
UNFINISHED = (
    model_pb.NOTIFICATION_STATUS_QUEUED,
    model_pb.NOTIFICATION_STATUS_DEFERRED,
)


def marketing_templates(directory: Path) -> list[str]:
    """The shipped templates, and three more marketing SMS like the FX one (other topics the
    consent text names), in `directory`; the marketing SMS template ids."""
    shutil.copytree(DEFAULT_DIRECTORY, directory, ignore=shutil.ignore_patterns("*.py", "__*"))
    shipped = (DEFAULT_DIRECTORY / "offer_usd_fx_wealth_sms_v1.yaml").read_text(encoding="utf-8")
    ids = ["offer_usd_fx_wealth_sms_v1"]
    for topic in ("deposits", "cards", "loans"):
        template_id = f"offer_burst_{topic}_sms_v1"
        text = shipped.replace("offer_usd_fx_wealth_sms_v1", template_id).replace(
            "topic: wealth", f"topic: {topic}"
        )
        (directory / f"{template_id}.yaml").write_text(text, encoding="utf-8")
        ids.append(template_id)
    return ids


def burst_settings(tmp_path: Path) -> tuple[dict[str, Any], list[str]]:
    """Every day a working day (marketing goes out whenever the test runs), the templates."""
    calendar = every_day_working_calendar(tmp_path / "every_day_working.yaml")
    templates = marketing_templates(tmp_path / "templates")
    return {"calendar_file": calendar, "templates_dir": tmp_path / "templates"}, templates


async def consented_party(stack: Stack) -> str:
    """A party with marketing SMS consent, in a zone where it is now early afternoon."""
    record_id = "BURST-1"
    party_id = await stack.link(record_id)
    await stack.set_preferences(record_id, party_id, time_zone=midday_zone())
    await stack.give_consent(
        record_id, source_pb.CONTACT_CHANNEL_SMS, source_pb.CONTACT_PURPOSE_MARKETING
    )
    await stack.consent_arrives(party_id)
    return party_id


async def burst(
    services: list[RunningService[Any]], party_id: str, templates: list[str]
) -> tuple[set[str], set[str]]:
    """1,000 marketing sends with a passcode every 50th, spread over `services`, 16 at a time;
    the marketing and the passcode notification ids."""
    requests: list[pb.SendNotificationRequest] = []
    for index in range(MARKETING_SENDS):
        requests.append(
            pb.SendNotificationRequest(
                party_id=party_id,
                channel=model_pb.NOTIFICATION_CHANNEL_SMS,
                template_id=templates[index % len(templates)],
                idempotency_key=f"burst-{uuid.uuid4()}",
                category=MARKETING,
            )
        )
        if index % (MARKETING_SENDS // PASSCODES) == 0:
            requests.append(
                pb.SendNotificationRequest(
                    party_id=party_id,
                    channel=model_pb.NOTIFICATION_CHANNEL_SMS,
                    template_id="otp_sms_v1",
                    idempotency_key=f"otp-{uuid.uuid4()}",
                    category=TRANSACTIONAL,
                    values={"code": f"{index:06d}"},
                )
            )
    channels = [
        authorised_channel(f"127.0.0.1:{service.grpc_port}", roles=("messaging_system",))
        for service in services
    ]
    stubs = [pb_grpc.NotificationsServiceStub(channel) for channel in channels]
    in_flight = asyncio.Semaphore(16)
    marketing: set[str] = set()
    passcodes: set[str] = set()

    async def send(index: int, request: pb.SendNotificationRequest) -> None:
        async with in_flight:
            answer = await stubs[index % len(stubs)].SendNotification(request, timeout=30)
        (marketing if request.category == MARKETING else passcodes).add(answer.notification_id)

    try:
        await asyncio.gather(*(send(i, request) for i, request in enumerate(requests)))
    finally:
        for channel in channels:
            await channel.close()
    return marketing, passcodes


async def all_of_party(stack: Stack, party_id: str) -> list[model_pb.Notification]:
    found: list[model_pb.Notification] = []
    async with authorised_channel(
        stack.address(stack.notifications), roles=("messaging_system",)
    ) as channel:
        stub = pb_grpc.NotificationsServiceStub(channel)
        token = ""
        while True:
            page = await stub.ListNotifications(
                pb.ListNotificationsRequest(party_id=party_id, page_size=200, page_token=token),
                timeout=30,
            )
            found.extend(page.notifications)
            token = page.next_page_token
            if not token:
                return found


async def settled(stack: Stack, party_id: str, expected: int) -> list[model_pb.Notification]:
    """Every notification of the party, once none is queued, deferred or being sent."""
    latest: list[model_pb.Notification] = []

    async def all_settled() -> bool:
        nonlocal latest
        try:
            latest = await all_of_party(stack, party_id)
        except grpc.aio.AioRpcError:
            return False
        return len(latest) == expected and all(n.status not in UNFINISHED for n in latest)

    await eventually(all_settled, timeout=300, interval=1)
    return latest


def assert_cap_held(
    stack: Stack,
    notifications: list[model_pb.Notification],
    marketing: set[str],
    passcodes: set[str],
) -> None:
    by_id = {n.notification_id: n for n in notifications}
    assert len(marketing) == MARKETING_SENDS
    assert len(passcodes) == PASSCODES
    marketing_sent = {ident for ident in marketing if by_id[ident].status == SENT}
    # Four distinct contents take turns: the cap, not dedup, is what stops the burst.
    assert len(marketing_sent) == CAP
    assert all(by_id[ident].status == SENT for ident in passcodes)

    at_gateway = Counter(sms["out_id"] for sms in stack.sms())
    assert set(at_gateway.values()) == {1}  # nothing stored twice
    assert set(at_gateway) == marketing_sent | passcodes

    rest = [by_id[ident] for ident in marketing - marketing_sent]
    reasons = Counter(n.suppression.reason for n in rest)
    assert all(n.status == SUPPRESSED for n in rest)
    assert set(reasons) <= {
        model_pb.SUPPRESSION_REASON_FREQUENCY_CAP,
        model_pb.SUPPRESSION_REASON_DUPLICATE_CONTENT,
    }
    assert reasons[model_pb.SUPPRESSION_REASON_FREQUENCY_CAP] > 0


async def test_the_cap_holds_for_a_burst_spread_over_two_replicas_on_one_postgresql_database(
    nats_server: NatsServer, tmp_path: Path, postgres_cluster: PostgresCluster
) -> None:
    settings, templates = burst_settings(tmp_path)
    async with notifications_stack(
        nats_server, tmp_path, database_url=postgres_cluster.create_database(), **settings
    ) as stack:
        replica = await stack.start_replica()
        party_id = await consented_party(stack)
        assert isinstance(stack.notifications, RunningService)

        marketing, passcodes = await burst([stack.notifications, replica], party_id, templates)
        notifications = await settled(stack, party_id, MARKETING_SENDS + PASSCODES)

        assert_cap_held(stack, notifications, marketing, passcodes)
