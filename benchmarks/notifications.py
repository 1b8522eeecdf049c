"""`make bench`, notifications: messages per second end to end through NATS to the local
gateways, and the FX journey's latency, ProfileChanged → OfferDecided → SMS accepted by the
local SMS gateway (target p99 ≤ 200 ms on this machine).

Identity, the profile, offers and notifications run as processes on embedded defaults (SQLite,
a local nats-server), the local gateways as `make run` starts them. Parties are linked at
identity (so notifications finds their phones there); their ProfileChanged events — consent to
marketing SMS, a valid C3 risk assessment, USD 6,000 — are published on the profile's stream as
the profile publishes them (from profile version 1000, above anything the profile itself says
about these new parties), so offers decides the USD wealth product outbound and notifications
sends it. Notifications runs with a calendar in which every day is a working day, a marketing
window of the whole day and no default quiet hours, so the figures do not depend on the hour.

Measured:
- the chain's throughput: N parties' ProfileChanged at once → N SMS at the gateway;
- notifications alone: N more OfferDecided (another offer id) at once → N SMS;
- the journey, one party at a time once every consumer has caught up: ProfileChanged published
  → OfferDecided seen on NATS → the gateway's receipt time of the SMS (its stored record),
  p50/p99.
It prints figures; it never passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import grpc
import nats
from google.protobuf import timestamp_pb2
from google.type import date_pb2
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from benchmarks.common import latency_line, say, service_process
from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc as identity_grpc
from zhike.identity.v1 import party_pb2
from zhike.notifications.v1 import events_pb2 as notification_events
from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.notifications.v1 import notifications_service_pb2 as notifications_pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as notifications_grpc
from zhike.offers.v1 import events_pb2 as offer_events
from zhike.offers.v1 import offers_pb2
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.profile.v1 import profile_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways.store import stored_records
from zhike_notifications.local_gateways.testing import GatewayProcess, local_providers
from zhike_notifications.testing import every_day_working_calendar
from zhike_runtime.events import headers as h
from zhike_runtime.ids import new_id
from zhike_runtime.testing.processes import (
    NatsServer,
    PostgresCluster,
    free_port,
    throwaway_postgres,
)
from zhike_runtime.testing.services import (
    authorised_channel,
    dispatcher_environment,
    wait_serving,
)

PROFILE_SUBJECT = "zhike.profile.v1.profile_changed"
OFFERS_DECIDED_SUBJECT = "zhike.offers.v1.offer_decided"
FIRST_VERSION = 1000
TARGET_P99_MS = 200.0
DEFAULT_PARTIES = 1000
DEFAULT_SAMPLES = 100


def _stamp(at: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _headers(message_type: str, event_id: str) -> dict[str, str]:
    return {
        h.MSG_ID: event_id,
        h.EVENT_ID: event_id,
        h.EVENT_TYPE: message_type,
        h.CONTENT_TYPE: h.PROTOBUF,
    }


def _usd_arrives(party_id: str, now: dt.datetime) -> bytes:
    """The profile's news of a consented C3 customer receiving USD 6,000."""
    expires = now.date() + dt.timedelta(days=300)
    facts = [
        profile_events.ProfileFact(
            consent_changed=profile_events.ConsentChanged(
                channel=source_pb.CONTACT_CHANNEL_SMS,
                purpose=source_pb.CONTACT_PURPOSE_MARKETING,
                given=True,
                evidence=profile_pb2.ConsentEvidence(
                    captured_where="branch 0101",
                    capture_time=_stamp(now - dt.timedelta(days=30)),
                    text_version="mkt-sms-2026-01",
                ),
            )
        ),
        profile_events.ProfileFact(
            risk_level_changed=profile_events.RiskLevelChanged(
                after=source_pb.CUSTOMER_RISK_C3,
                expire_date=date_pb2.Date(year=expires.year, month=expires.month, day=expires.day),
            )
        ),
        profile_events.ProfileFact(
            balance_changed=profile_events.BalanceChanged(
                currency_code="USD",
                side=profile_events.BALANCE_SIDE_ASSETS,
                before_minor_units=0,
                after_minor_units=600_000,
            )
        ),
    ]
    return profile_events.ProfileChanged(
        party_id=party_id,
        profile_version=FIRST_VERSION,
        change_time=_stamp(now),
        cause=profile_events.CHANGE_CAUSE_SOURCE_EVENT,
        facts=facts,
    ).SerializeToString()


async def _link(address: str, count: int, prefix: str) -> list[str]:
    """`count` customers with phones linked at identity, 16 at a time; their party ids."""
    party_ids: list[str] = []
    # Realistic mobile numbers from a seed (identity keeps placeholder numbers such as
    # 139 0000 0000 out of the golden record, as a bank's data quality rules would).
    rng = random.Random(f"{prefix}-phones")
    phones = [f"+86139{rng.randrange(10_000_000, 99_999_999):08d}" for _ in range(count)]
    async with authorised_channel(address, roles=["source_system"]) as channel:
        stub = identity_grpc.IdentityServiceStub(channel)

        async def link(n: int) -> str:
            response = await stub.LinkSourceRecord(
                identity_pb.LinkSourceRecordRequest(
                    source_record=party_pb2.SourceRecord(
                        key=party_pb2.SourceRecordKey(
                            source_system="core_deposits", source_record_id=f"{prefix}-{n}"
                        ),
                        full_name="基准客户",
                        phone=phones[n],
                    )
                ),
                timeout=30,
            )
            return str(response.party_id)

        for first in range(0, count, 16):
            party_ids += await asyncio.gather(
                *(link(n) for n in range(first, min(first + 16, count)))
            )
    return party_ids


class Outcomes:
    """Every notification's end as notifications announces it (sent, suppressed, failed): what
    a throughput phase waits for, so that a refused message does not stall it."""

    SUBJECTS = ("notification_sent", "notification_suppressed", "notification_failed")

    def __init__(self) -> None:
        self.by_kind: dict[str, set[str]] = {kind: set() for kind in self.SUBJECTS}
        self.reasons: Counter[str] = Counter()

    async def follow(self, client: NATS) -> None:
        async def on_message(message: Msg) -> None:
            kind = message.subject.rsplit(".", 1)[-1]
            if kind == "notification_sent":
                ident = notification_events.NotificationSent.FromString(message.data)
                self.by_kind[kind].add(ident.notification_id)
            elif kind == "notification_failed":
                failed = notification_events.NotificationFailed.FromString(message.data)
                self.by_kind[kind].add(failed.notification_id)
            else:
                refused = notification_events.NotificationSuppressed.FromString(message.data)
                self.by_kind[kind].add(refused.notification_id)
                self.reasons[model_pb.SuppressionReason.Name(refused.suppression.reason)] += 1

        for kind in self.SUBJECTS:
            await client.subscribe(f"zhike.notifications.v1.{kind}", cb=on_message)

    def total(self) -> int:
        return sum(len(ids) for ids in self.by_kind.values())

    def sent(self) -> int:
        return len(self.by_kind["notification_sent"])

    async def wait_for(self, wanted: int, timeout: float) -> float:
        """Waits until `wanted` notifications have ended; the time it took (s)."""
        started = time.perf_counter()
        while time.perf_counter() < started + timeout:
            if self.total() >= wanted:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.total()} of {wanted} notifications ended in {timeout:.0f} s")


async def _chain_throughput(client: NATS, party_ids: Sequence[str], outcomes: Outcomes) -> None:
    js = client.jetstream()
    now = dt.datetime.now(dt.UTC)
    ended, sent = outcomes.total(), outcomes.sent()
    started = time.perf_counter()
    for first in range(0, len(party_ids), 500):
        await asyncio.gather(
            *(
                js.publish(
                    PROFILE_SUBJECT,
                    _usd_arrives(party_id, now),
                    headers=_headers(
                        profile_events.ProfileChanged.DESCRIPTOR.full_name, f"bench-{party_id}"
                    ),
                )
                for party_id in party_ids[first : first + 500]
            )
        )
    published = time.perf_counter() - started
    waited = await outcomes.wait_for(ended + len(party_ids), timeout=900)
    elapsed = published + waited
    delivered = outcomes.sent() - sent
    say(
        f"ProfileChanged → OfferDecided → SMS accepted by the gateway, {len(party_ids)} parties "
        f"at once: {elapsed:.1f} s, {delivered / elapsed:.0f} messages/s ({delivered} sent; "
        f"publishing took {published:.1f} s)"
    )


async def _notifications_throughput(
    client: NATS, party_ids: Sequence[str], outcomes: Outcomes
) -> None:
    """Notifications alone: an OfferDecided per party for a second offer, all at once."""
    js = client.jetstream()
    now = dt.datetime.now(dt.UTC)
    ended, sent = outcomes.total(), outcomes.sent()
    started = time.perf_counter()
    for first in range(0, len(party_ids), 500):
        await asyncio.gather(
            *(
                js.publish(
                    OFFERS_DECIDED_SUBJECT,
                    offer_events.OfferDecided(
                        # A platform id, as offers' decisions have: offers reads the decision id
                        # of every NotificationSent and dead-letters one that is not.
                        decision_id=new_id(),
                        party_id=party_id,
                        offer_id="bench_second_offer",
                        offer_version=1,
                        channel=offers_pb2.CHANNEL_SMS,
                        template_id="offer_usd_fx_wealth_sms_v1",
                        category=offers_pb2.OFFER_CATEGORY_MARKETING,
                        decide_time=_stamp(now),
                        profile_version=FIRST_VERSION,
                    ).SerializeToString(),
                    headers=_headers(
                        offer_events.OfferDecided.DESCRIPTOR.full_name, f"decided-{party_id}"
                    ),
                )
                for party_id in party_ids[first : first + 500]
            )
        )
    waited = await outcomes.wait_for(ended + len(party_ids), timeout=900)
    elapsed = time.perf_counter() - started
    delivered = outcomes.sent() - sent
    say(
        f"OfferDecided → SMS accepted by the gateway (notifications alone), {len(party_ids)} at "
        f"once: {elapsed:.1f} s, {delivered / elapsed:.0f} messages/s ({delivered} sent; after "
        f"the last publish {waited:.1f} s)"
    )


async def _what_became_of(address: str, party_id: str) -> str:
    """The party's notifications and their status, for a journey that did not end."""
    async with authorised_channel(address, roles=["messaging_system"]) as channel:
        answer = await notifications_grpc.NotificationsServiceStub(channel).ListNotifications(
            notifications_pb.ListNotificationsRequest(party_id=party_id), timeout=10
        )
    found = [
        f"{model_pb.NotificationStatus.Name(n.status)} {n.suppression.detail}".strip()
        for n in answer.notifications
    ]
    return f"no NotificationSent within 30 s; the party's notifications: {found or 'none'}"


async def _journey(
    client: NATS, party_ids: Sequence[str], state_dir: Path, notifications: str
) -> None:
    """One party at a time: publish → OfferDecided seen → NotificationSent seen; the gateway's
    own receipt time of the SMS is the end of the journey."""
    decided: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
    sent: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def on_decided(message: Msg) -> None:
        event = offer_events.OfferDecided.FromString(message.data)
        await decided.put((time.time(), event.party_id))

    async def on_sent(message: Msg) -> None:
        event = notification_events.NotificationSent.FromString(message.data)
        await sent.put((event.party_id, event.notification_id))

    await client.subscribe(OFFERS_DECIDED_SUBJECT, cb=on_decided)
    await client.subscribe("zhike.notifications.v1.notification_sent", cb=on_sent)
    js = client.jetstream()
    to_decision: list[float] = []
    to_gateway: list[float] = []
    decision_to_gateway: list[float] = []
    for party_id in party_ids:
        now = dt.datetime.now(dt.UTC)
        started = time.time()
        await js.publish(
            PROFILE_SUBJECT,
            _usd_arrives(party_id, now),
            headers=_headers(
                profile_events.ProfileChanged.DESCRIPTOR.full_name, f"journey-{party_id}"
            ),
        )
        while True:
            at, party = await asyncio.wait_for(decided.get(), timeout=30)
            if party == party_id:
                break
        while True:
            try:
                party, notification_id = await asyncio.wait_for(sent.get(), timeout=30)
            except TimeoutError:
                raise TimeoutError(await _what_became_of(notifications, party_id)) from None
            if party == party_id:
                break
        [record] = [
            r for r in stored_records(state_dir, Channel.SMS) if r["out_id"] == notification_id
        ]
        received = dt.datetime.fromisoformat(record["received_at"]).timestamp()
        to_decision.append((at - started) * 1000)
        to_gateway.append((received - started) * 1000)
        decision_to_gateway.append((received - at) * 1000)
    say(latency_line("ProfileChanged → OfferDecided", to_decision, 44))
    say(latency_line("OfferDecided → SMS accepted by the gateway", decision_to_gateway, 44))
    say(latency_line("ProfileChanged → SMS accepted by the gateway", to_gateway, 44))
    say(f"  target p99 <= {TARGET_P99_MS:.0f} ms")


STREAMS = ("ZHIKE_IDENTITY", "ZHIKE_SOURCE", "ZHIKE_PROFILE", "ZHIKE_OFFERS", "ZHIKE_NOTIFICATIONS")


async def _drained(client: NATS, timeout: float = 600) -> float:
    """Waits until every service's consumers have caught up with every stream (what a burst
    left behind: the profile's contact history, offers' contacts); the time it took (s)."""
    js = client.jetstream()
    started = time.perf_counter()
    while time.perf_counter() < started + timeout:
        behind = 0
        for stream in STREAMS:
            for info in await js.consumers_info(stream):
                behind += (info.num_pending or 0) + (info.num_ack_pending or 0)
        if behind == 0:
            return time.perf_counter() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the consumers did not catch up within {timeout:.0f} s")


async def _measure(
    args: argparse.Namespace, nats_url: str, identity: str, notifications: str, state_dir: Path
) -> None:
    started = time.perf_counter()
    party_ids = await _link(identity, args.parties + args.samples, "BENCH")
    say(f"{len(party_ids)} customers linked at identity in {time.perf_counter() - started:.1f} s")
    client = await nats.connect(nats_url)
    try:
        say(f"consumers caught up in {await _drained(client):.1f} s")
        await _journey(client, party_ids[args.parties :][:20], state_dir, notifications)  # warm-up
        outcomes = Outcomes()
        await outcomes.follow(client)
        await _chain_throughput(client, party_ids[: args.parties], outcomes)
        await _notifications_throughput(client, party_ids[: args.parties], outcomes)
        if outcomes.reasons:
            say(f"  suppressed: {dict(outcomes.reasons)}")
        say(f"consumers caught up in {await _drained(client):.1f} s")
        await _journey(client, party_ids[args.parties + 20 :], state_dir, notifications)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notifications")
    parser.add_argument("--parties", type=int, default=DEFAULT_PARTIES)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="every service on a throwaway PostgreSQL cluster (as in a bank) instead of SQLite",
    )
    args = parser.parse_args(argv)
    args.samples += 20  # the warm-up journeys
    store = "PostgreSQL 15 (throwaway cluster)" if args.postgres else "SQLite"
    say(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {store} and a local nats-server"
    )
    with contextlib.ExitStack() as resources:
        cluster = resources.enter_context(throwaway_postgres()) if args.postgres else None
        return _run(args, cluster)


def _run(args: argparse.Namespace, cluster: PostgresCluster | None) -> int:
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        nats_server = NatsServer(scratch / "nats")
        nats_server.start()
        gateways = GatewayProcess(scratch / "gateways")
        gateways.start()
        calendar = every_day_working_calendar(scratch / "every-day-working.yaml")
        processes: list[subprocess.Popen[bytes]] = []
        try:

            def start(name: str, extra: dict[str, str] | None = None) -> int:
                database_url = (
                    cluster.create_database()
                    if cluster is not None
                    else f"sqlite+aiosqlite:///{scratch / f'{name}.db'}"
                )
                process, port = service_process(
                    f"zhike_{name}", database_url, nats_server.url, extra
                )
                processes.append(process)
                asyncio.run(wait_serving(port, timeout=120))
                return port

            identity = start("identity")
            profile = start("profile")
            start("offers")
            notifications = start(
                "notifications",
                dispatcher_environment(f"127.0.0.1:{identity}", f"127.0.0.1:{profile}")
                | {
                    "ZHIKE_PROVIDERS": json.dumps(
                        local_providers(gateways.http_url, gateways.smtp_port)
                    ),
                    "ZHIKE_CALENDAR_FILE": str(calendar),
                    "ZHIKE_MARKETING_WINDOW_START": "00:00",
                    "ZHIKE_MARKETING_WINDOW_END": "23:59",
                    "ZHIKE_DEFAULT_QUIET_HOURS": "none",
                    "ZHIKE_WEBHOOK_PORT": str(free_port()),
                },
            )
            asyncio.run(
                _measure(
                    args,
                    nats_server.url,
                    f"127.0.0.1:{identity}",
                    f"127.0.0.1:{notifications}",
                    gateways.state_dir,
                )
            )
        except grpc.aio.AioRpcError as error:
            say(f"a call failed: {error.code().name}")
            return 1
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=60)
            gateways.stop()
            nats_server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
