"""RELIABILITY S11: a burst of 1,000 marketing sends for one consented party, with 20 one-time
passcodes among them, spread over two notifications replicas on one PostgreSQL database.
Exactly the rate limit's worth of requests is taken (the party's lock holds across replicas);
every other is answered RESOURCE_EXHAUSTED with when to retry (google.rpc.RetryInfo) and the
limit (google.rpc.QuotaFailure), and nothing is stored for it. Of those taken, exactly the
frequency cap's marketing SMS reach the gateway, and every passcode taken does."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
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

from ..flows import over_limit
from ..stack import Stack, notifications_stack

MARKETING_TEMPLATES = 4  # distinct contents, so the cap shows, not only content dedup
MARKETING_SENDS = 1000
PASSCODES = 20
CAP = 2  # the default frequency cap: 2 marketing messages in 7 days ("7:2,30:6")
# The rate limit for the test: a window the burst surely ends inside, so exactly this many are
# taken however slow the machine (the default, "1m:10,1h:60", would take 10, or more past a
# minute). A window's own arithmetic is tested in tests/domain/test_rate_limit.py.
RATE_LIMIT = "1h:30"
ALLOWED = 30
LIMIT_NAMED = "30 notifications per party per hour"
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
    return {
        "calendar_file": calendar,
        "templates_dir": tmp_path / "templates",
        "party_rate_limit": RATE_LIMIT,
    }, templates


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


@dataclass
class Answers:
    """What the burst's requests were answered: the notifications taken, by category, and the
    refusals' details."""

    marketing: set[str] = field(default_factory=set)
    passcodes: set[str] = field(default_factory=set)
    refused_marketing: int = 0
    refused_passcodes: int = 0
    retry_delays: list[dt.timedelta] = field(default_factory=list)
    limits_named: Counter[str] = field(default_factory=Counter)


async def burst(
    services: list[RunningService[Any]], party_id: str, templates: list[str]
) -> Answers:
    """1,000 marketing sends with a passcode before every 50th (the very first request is
    one), spread over `services`, 16 at a time."""
    requests: list[pb.SendNotificationRequest] = []
    for index in range(MARKETING_SENDS):
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
        requests.append(
            pb.SendNotificationRequest(
                party_id=party_id,
                channel=model_pb.NOTIFICATION_CHANNEL_SMS,
                template_id=templates[index % len(templates)],
                idempotency_key=f"burst-{uuid.uuid4()}",
                category=MARKETING,
            )
        )
    channels = [
        authorised_channel(f"127.0.0.1:{service.grpc_port}", roles=("messaging_system",))
        for service in services
    ]
    stubs = [pb_grpc.NotificationsServiceStub(channel) for channel in channels]
    in_flight = asyncio.Semaphore(16)
    answers = Answers()

    async def send(index: int, request: pb.SendNotificationRequest) -> None:
        is_marketing = request.category == MARKETING
        try:
            async with in_flight:
                answer = await stubs[index % len(stubs)].SendNotification(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            delay, limits = over_limit(error)
            answers.retry_delays.append(delay)
            answers.limits_named.update(limits)
            if is_marketing:
                answers.refused_marketing += 1
            else:
                answers.refused_passcodes += 1
            return
        (answers.marketing if is_marketing else answers.passcodes).add(answer.notification_id)

    try:
        await asyncio.gather(*(send(i, request) for i, request in enumerate(requests)))
    finally:
        for channel in channels:
            await channel.close()
    return answers


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


def assert_s11_held(
    stack: Stack, notifications: list[model_pb.Notification], answers: Answers
) -> None:
    marketing, passcodes = answers.marketing, answers.passcodes
    # Exactly the limit's worth taken, every other request refused, with when to retry (within
    # the hour's window) and the limit named.
    assert len(marketing) + len(passcodes) == ALLOWED
    assert answers.refused_marketing == MARKETING_SENDS - len(marketing)
    assert answers.refused_passcodes == PASSCODES - len(passcodes)
    refused = MARKETING_SENDS + PASSCODES - ALLOWED
    assert len(answers.retry_delays) == refused
    assert all(dt.timedelta(0) < d <= dt.timedelta(hours=1) for d in answers.retry_delays)
    assert answers.limits_named == Counter({LIMIT_NAMED: refused})

    # Nothing stored for a refused request: the party's notifications are the ones taken.
    by_id = {n.notification_id: n for n in notifications}
    assert set(by_id) == marketing | passcodes

    # Of those taken, the cap's worth of marketing goes out: four distinct contents take
    # turns, so the cap, not dedup, is what stops them; and every passcode taken goes out.
    assert len(marketing) > CAP
    assert passcodes  # the first request, a passcode, came in before the limit was reached
    marketing_sent = {ident for ident in marketing if by_id[ident].status == SENT}
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


async def test_a_burst_over_two_replicas_on_one_postgresql_database_is_held_to_the_rate_limit(
    nats_server: NatsServer, tmp_path: Path, postgres_cluster: PostgresCluster
) -> None:
    settings, templates = burst_settings(tmp_path)
    async with notifications_stack(
        nats_server, tmp_path, database_url=postgres_cluster.create_database(), **settings
    ) as stack:
        replica = await stack.start_replica()
        party_id = await consented_party(stack)
        assert isinstance(stack.notifications, RunningService)

        answers = await burst([stack.notifications, replica], party_id, templates)
        notifications = await settled(stack, party_id, ALLOWED)

        assert_s11_held(stack, notifications, answers)
