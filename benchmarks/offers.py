"""Offer decisioning on PostgreSQL: DecideOffers latency and rate, ProfileChanged → offer events.

1. Starts a throwaway PostgreSQL 15 cluster, a nats-server and the offers service as deployed
   (`python -m zhike_offers`, its own process; `--replicas 2` starts two behind the client's
   round robin, as a Kubernetes Service would spread calls).
2. Tops the default catalogue up to `--offers` live offers through CreateOffer (variants of the
   defaults: other thresholds, currencies, tiers and segments).
3. Publishes one ProfileChanged per party for `--parties` parties on the profile's stream (as
   the profile service publishes them: balances per currency, holdings, tier, segments,
   consent, risk level) and measures how fast offers applies them, re-deciding outbound
   offers as it goes (events/s).
4. DecideOffers for random parties on the mobile app: one caller at a time (p50/p99),
   alternating with a trivial gRPC call to the same server (the health Check); then
   `--callers` concurrent callers for `--seconds` (decisions/s, and latency under that load);
   then the target's own terms: calls started on a fixed schedule at `--rate` per second for
   `--seconds` (open loop: a slow answer holds back no later call, and each latency counts from
   the call's scheduled start, so queueing shows), p50/p99 and the rate achieved, at each
   `--rate` in turn; then the trivial call on the first rate's schedule, whose CPU per call
   is what gRPC alone costs at that rate.
5. ProfileChanged → OfferDecided (USD 6,000 arrives for a consenting C3 customer) and
   ProfileChanged → OfferWithdrawn (the USD leaves), one party at a time (p50/p99).
6. The outbound sweep: one more replica, and an outbound offer launched through CreateOffer that
   it decides for every party (parties/s, from its first chunk to its last), with one caller
   asking it for decisions meanwhile and then as many times with it idle (p50/p99).

Prints figures; never asserts.

    python -m benchmarks.offers [--parties N] [--offers K] [--calls C] [--callers M]
                                [--seconds S] [--rate R [R ...]] [--replicas P]

`--parties 5000 --calls 300 --seconds 10` is a quick check.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import itertools
import os
import platform
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import nats
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from google.type import date_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.msg import Msg

from benchmarks.common import (
    CpuMeter,
    ProcessGroups,
    client_collector_paused,
    latency_line,
    platform_processes,
    say,
    service_process,
)
from zhike.identity.v1 import party_pb2
from zhike.offers.v1 import events_pb2 as offer_events
from zhike.offers.v1 import offers_pb2
from zhike.offers.v1 import offers_service_pb2 as offers_pb
from zhike.offers.v1 import offers_service_pb2_grpc as offers_grpc
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.profile.v1 import profile_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_offers.storage import schema as offers_schema
from zhike_runtime.db import Database
from zhike_runtime.events import headers as h
from zhike_runtime.testing.processes import NatsServer, throwaway_postgres
from zhike_runtime.testing.services import authorised_channel, wait_serving

DEFAULT_PARTIES = 100_000
DEFAULT_OFFERS = 50
DEFAULT_CALLS = 2_000
DEFAULT_CALLERS = 8
DEFAULT_SECONDS = 30.0
DEFAULT_LATENCY_SAMPLES = 200
TARGET_P99_MS = 10.0
TARGET_RATE = 1_000.0
# Offers replicas: the Helm chart's default replicaCount.
DEFAULT_REPLICAS = 2

PROFILE_STREAM = "ZHIKE_PROFILE"
PROFILE_SUBJECT = "zhike.profile.v1.profile_changed"
OFFERS_CONSUMER = "offers-profile"
CURRENCIES = ("CNY", "USD", "EUR", "HKD")
TIERS = ("standard", "standard", "standard", "silver", "gold", "platinum")
SEGMENTS = ("usd_holder", "young_professional", "mortgage_holder", "premium", "dormant")
PRODUCTS = (
    (source_pb.PRODUCT_LINE_CURRENT_ACCOUNT, "CUR-CNY", "CNY"),
    (source_pb.PRODUCT_LINE_SAVINGS, "SAV-USD", "USD"),
    (source_pb.PRODUCT_LINE_CREDIT_CARD, "CC-GOLD", "CNY"),
    (source_pb.PRODUCT_LINE_MORTGAGE, "MTG-30Y", "CNY"),
    (source_pb.PRODUCT_LINE_INVESTMENT, "WM_CNY_3M", "CNY"),
)


def _stamp(at: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


# --- the catalogue -------------------------------------------------------------------------


def _variant(n: int, rng: random.Random) -> offers_pb2.Offer:
    """A live marketing offer unlike the defaults: a threshold on one currency, sometimes a tier
    or a segment, on the app and one outbound channel."""
    currency = rng.choice(CURRENCIES)
    threshold = rng.choice((1_000, 5_000, 20_000, 50_000, 200_000))
    eligibility = [f'assets["{currency}"] >= {threshold}.0']
    depends = [offers_pb2.FACT_KIND_ASSETS, offers_pb2.FACT_KIND_CONSENT]
    if rng.random() < 0.3:
        eligibility.append(f'tier in ["{rng.choice(TIERS[3:])}", "platinum"]')
        depends.append(offers_pb2.FACT_KIND_TIER)
    if rng.random() < 0.3:
        eligibility.append(f'"{rng.choice(SEGMENTS)}" in segments')
        depends.append(offers_pb2.FACT_KIND_SEGMENTS)
    outbound_channel = rng.choice((offers_pb2.CHANNEL_SMS, offers_pb2.CHANNEL_PUSH))
    return offers_pb2.Offer(
        offer_id=f"bench_offer_{n:03d}",
        names=offers_pb2.OfferNames(zh_cn=f"基准产品 {n}", en=f"Benchmark product {n}"),
        product_code=f"BENCH-{n:03d}",
        category=offers_pb2.OFFER_CATEGORY_MARKETING,
        channels=[offers_pb2.CHANNEL_MOBILE_APP, outbound_channel],
        placements=["home_banner"],
        eligibility=eligibility,
        applicability=[f'!("BENCH-{n:03d}" in products)'],
        value_cny=str(rng.choice((50, 200, 600, 1500))),
        levers="1",
        contact_limits=offers_pb2.ContactLimits(max_contacts=2, window_days=30),
        outbound=rng.random() < 0.5,
        templates=[
            offers_pb2.ChannelTemplate(channel=offers_pb2.CHANNEL_MOBILE_APP, template_id="card"),
            offers_pb2.ChannelTemplate(channel=outbound_channel, template_id=f"bench_{n}"),
        ],
        depends_on=depends,
    )


async def _top_up_catalogue(address: str, wanted: int, seed: int) -> int:
    async with authorised_channel(address, roles=["marketing_operations"]) as channel:
        stub = offers_grpc.OffersServiceStub(channel)
        live = 0
        token = ""
        while True:
            page = await stub.ListOffers(
                offers_pb.ListOffersRequest(page_size=100, page_token=token), timeout=30
            )
            live += len(page.offers)
            token = page.next_page_token
            if not token:
                break
        rng = random.Random(seed)
        for n in range(wanted - live):
            await stub.CreateOffer(offers_pb.CreateOfferRequest(offer=_variant(n, rng)), timeout=30)
        return max(live, wanted)


# --- the profile's events ------------------------------------------------------------------


def _headers(event_id: str) -> dict[str, str]:
    return {
        h.MSG_ID: event_id,
        h.EVENT_ID: event_id,
        h.EVENT_TYPE: profile_events.ProfileChanged.DESCRIPTOR.full_name,
        h.CONTENT_TYPE: h.PROTOBUF,
    }


def _consent(given: bool, at: dt.datetime) -> profile_events.ProfileFact:
    return profile_events.ProfileFact(
        consent_changed=profile_events.ConsentChanged(
            channel=source_pb.CONTACT_CHANNEL_SMS,
            purpose=source_pb.CONTACT_PURPOSE_MARKETING,
            given=given,
            evidence=profile_pb2.ConsentEvidence(
                captured_where="mobile_banking", capture_time=_stamp(at), text_version="mkt-1"
            ),
        )
    )


def _risk(level: int, expires: dt.date) -> profile_events.ProfileFact:
    return profile_events.ProfileFact(
        risk_level_changed=profile_events.RiskLevelChanged(
            after=level,  # type: ignore[arg-type]
            expire_date=date_pb2.Date(year=expires.year, month=expires.month, day=expires.day),
        )
    )


def _balance(currency: str, before: int, after: int) -> profile_events.ProfileFact:
    return profile_events.ProfileFact(
        balance_changed=profile_events.BalanceChanged(
            currency_code=currency,
            side=profile_events.BALANCE_SIDE_ASSETS,
            before_minor_units=before,
            after_minor_units=after,
        )
    )


def _party_profile(party_id: str, rng: random.Random, now: dt.datetime) -> bytes:
    """A first ProfileChanged for a party: everything it holds, as the profile tells it."""
    facts = [_consent(rng.random() < 0.6, now - dt.timedelta(days=90))]
    for currency in CURRENCIES:
        if currency == "CNY" or rng.random() < 0.25:
            facts.append(_balance(currency, 0, int(rng.lognormvariate(10, 1.5)) * 100))
    for index, (line, code, currency) in enumerate(rng.sample(PRODUCTS, rng.randint(1, 3))):
        facts.append(
            profile_events.ProfileFact(
                holding_opened=profile_events.HoldingOpened(
                    source_record=party_pb2.SourceRecordKey(
                        source_system="core_deposits", source_record_id=f"R-{party_id[:8]}"
                    ),
                    account_id=f"A{index}",
                    product_line=line,
                    product_code=code,
                    currency_code=currency,
                )
            )
        )
    facts.append(
        profile_events.ProfileFact(tier_changed=profile_events.TierChanged(after=rng.choice(TIERS)))
    )
    for segment in rng.sample(SEGMENTS, rng.randint(0, 2)):
        facts.append(
            profile_events.ProfileFact(
                segment_entered=profile_events.SegmentEntered(segment=segment)
            )
        )
    if rng.random() < 0.5:
        facts.append(
            _risk(rng.randint(1, 5), now.date() + dt.timedelta(days=rng.randint(-30, 300)))
        )
    # Drawn last, so the other facts are those of the runs before ages were told.
    age = profile_events.AgeChanged(after_years=rng.randint(18, 80))
    facts.append(profile_events.ProfileFact(age_changed=age))
    return profile_events.ProfileChanged(
        party_id=party_id,
        profile_version=1,
        change_time=_stamp(now),
        cause=profile_events.CHANGE_CAUSE_SOURCE_EVENT,
        facts=facts,
    ).SerializeToString()


async def _load_parties(nats_url: str, party_ids: Sequence[str], seed: int) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        rng = random.Random(seed)
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        for first in range(0, len(party_ids), 500):
            await asyncio.gather(
                *(
                    js.publish(
                        PROFILE_SUBJECT,
                        _party_profile(party_id, rng, now),
                        headers=_headers(f"bench-{party_id}-1"),
                    )
                    for party_id in party_ids[first : first + 500]
                )
            )
        published = time.perf_counter() - started
        while True:
            info = await js.consumer_info(PROFILE_STREAM, OFFERS_CONSUMER)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    say(
        f"{len(party_ids)} parties' ProfileChanged published in {published:.1f} s and applied "
        f"(with outbound re-decisions) in {elapsed:.1f} s: {len(party_ids) / elapsed:.0f} events/s"
    )


async def _profile_stream(nats_url: str) -> None:
    """The profile's and notifications' streams, as those services declare them (offers
    consumes from both, and waits for both before it consumes anything)."""
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().add_stream(name=PROFILE_STREAM, subjects=["zhike.profile.v1.>"])
        await client.jetstream().add_stream(
            name="ZHIKE_NOTIFICATIONS", subjects=["zhike.notifications.v1.>"]
        )
    finally:
        await client.close()


# --- DecideOffers --------------------------------------------------------------------------


def _app_requests(
    party_ids: Sequence[str], rng: random.Random
) -> Callable[[], offers_pb.DecideOffersRequest]:
    """DecideOffers for a random party on the app's home banner, a new request each call."""

    def request() -> offers_pb.DecideOffersRequest:
        return offers_pb.DecideOffersRequest(
            party_id=rng.choice(party_ids),
            channel=offers_pb2.CHANNEL_MOBILE_APP,
            placement="home_banner",
            max_offers=3,
        )

    return request


async def _decide(
    addresses: Sequence[str],
    party_ids: Sequence[str],
    args: argparse.Namespace,
    processes: ProcessGroups,
) -> None:
    rng = random.Random(args.seed)
    channels = [authorised_channel(address, roles=["call_centre_agent"]) for address in addresses]
    try:
        stubs = [offers_grpc.OffersServiceStub(channel) for channel in channels]
        health = health_pb2_grpc.HealthStub(channels[0]).Check

        request = _app_requests(party_ids, rng)
        for _ in range(100):  # warm-up: connections, caches
            await stubs[0].DecideOffers(request(), timeout=30)
        decide_ms: list[float] = []
        echo_ms: list[float] = []
        offered = 0
        for _ in range(args.calls):
            started = time.perf_counter()
            await health(health_pb2.HealthCheckRequest(service=""), timeout=30)
            echo_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            response = await stubs[0].DecideOffers(request(), timeout=30)
            decide_ms.append((time.perf_counter() - started) * 1000)
            offered += len(response.decisions)
        say(latency_line("DecideOffers, 1 caller", decide_ms, 40))
        say(latency_line("trivial gRPC call (health Check)", echo_ms, 40))
        say(f"  {offered / args.calls:.2f} offers decided per call on average")

        spread = itertools.cycle(stubs)
        loaded: list[float] = []
        deadline = time.perf_counter() + args.seconds

        async def caller(stub: offers_grpc.OffersServiceStub) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await stub.DecideOffers(request(), timeout=30)
                loaded.append((time.perf_counter() - started) * 1000)

        meter = CpuMeter(processes)
        started = time.perf_counter()
        await asyncio.gather(*(caller(next(spread)) for _ in range(args.callers)))
        elapsed = time.perf_counter() - started
        say(latency_line(f"DecideOffers, {args.callers} callers", loaded, 40))
        say(
            f"  {len(loaded) / elapsed:.0f} decisions/s with {len(addresses)} replica(s); "
            f"target p99 <= {TARGET_P99_MS:.0f} ms at >= {TARGET_RATE:.0f}/s"
        )
        say(meter.line(len(loaded), elapsed, "decision"))
        # The target's own terms, then a trivial call on the same schedule: what gRPC alone
        # costs both sides at that rate (far more per call than under a closed loop, where
        # each wake-up serves several calls).
        deciding = [functools.partial(_decide_one, stub, request) for stub in stubs]
        echoing = [
            functools.partial(_echo_one, health_pb2_grpc.HealthStub(channel).Check)
            for channel in channels
        ]
        runs = [("DecideOffers", "decision", deciding, rate) for rate in args.rate]
        runs.append(("trivial gRPC call (health Check)", "call", echoing, args.rate[0]))
        for label, unit, calls_to, rate in runs:
            meter = CpuMeter(processes)
            started = time.perf_counter()
            count = await _at_rate(label, unit, calls_to, rate, args.seconds)
            say(meter.line(count, time.perf_counter() - started, unit))
        say(f"  target p99 <= {TARGET_P99_MS:.0f} ms at >= {TARGET_RATE:.0f} decisions/s")
    finally:
        for channel in channels:
            await channel.close()


async def _at_rate(
    label: str,
    unit: str,
    calls_to: Sequence[Callable[[], Awaitable[object]]],
    rate: float,
    seconds: float,
) -> int:
    """Calls started on schedule, `rate` a second, round robin over `calls_to` (one per
    replica); prints their latency and returns how many were answered."""
    spread = itertools.cycle(calls_to)
    latencies: list[float] = []
    refused: Counter[str] = Counter()
    running: set[asyncio.Task[None]] = set()

    async def call(call_to: Callable[[], Awaitable[object]], due: float) -> None:
        try:
            await call_to()
        except grpc.aio.AioRpcError as error:
            # An overloaded server sheds calls (its concurrency limit): counted, not timed.
            refused[error.code().name] += 1
            return
        latencies.append((time.perf_counter() - due) * 1000)

    count = int(rate * seconds)
    started = time.perf_counter()
    for n in range(count):
        due = started + n / rate
        ahead = due - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
        task = asyncio.create_task(call(next(spread), due))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    elapsed = time.perf_counter() - started
    say(latency_line(f"{label} at {rate:.0f}/s, open loop", latencies, 40))
    say(
        f"  {len(latencies) / elapsed:.0f} {unit}s/s answered over {elapsed:.1f} s "
        f"(latency from each call's scheduled start)"
    )
    if refused:
        say("  refused: " + ", ".join(f"{n} {code}" for code, n in sorted(refused.items())))
    return len(latencies)


async def _decide_one(
    stub: offers_grpc.OffersServiceStub, request: Callable[[], offers_pb.DecideOffersRequest]
) -> object:
    return await stub.DecideOffers(request(), timeout=30)


async def _echo_one(check: Any) -> object:
    return await check(health_pb2.HealthCheckRequest(service=""), timeout=30)


# --- ProfileChanged → OfferDecided / OfferWithdrawn ----------------------------------------


async def _reaction(nats_url: str, samples: int) -> None:
    client = await nats.connect(nats_url)
    arrived: asyncio.Queue[tuple[float, str, str]] = asyncio.Queue()

    async def on_message(message: Msg) -> None:
        kind = message.subject.rsplit(".", 1)[-1]
        if kind == "offer_decided":
            event: offer_events.OfferDecided | offer_events.OfferWithdrawn = (
                offer_events.OfferDecided.FromString(message.data)
            )
        else:
            event = offer_events.OfferWithdrawn.FromString(message.data)
        await arrived.put((time.perf_counter(), kind, event.party_id))

    async def wait_for(party_id: str, kind: str, started: float) -> float:
        while True:
            at, got, party = await asyncio.wait_for(arrived.get(), timeout=30)
            if party == party_id and got == kind:
                return (at - started) * 1000

    try:
        js = client.jetstream()
        await client.subscribe("zhike.offers.v1.>", cb=on_message)
        decided_ms: list[float] = []
        withdrawn_ms: list[float] = []
        now = dt.datetime.now(dt.UTC)
        for n in range(samples):
            party_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"zhike-bench-reaction-{n}"))
            arriving = profile_events.ProfileChanged(
                party_id=party_id,
                profile_version=1,
                change_time=_stamp(now),
                cause=profile_events.CHANGE_CAUSE_SOURCE_EVENT,
                facts=[
                    _consent(True, now - dt.timedelta(days=30)),
                    _risk(source_pb.CUSTOMER_RISK_C3, now.date() + dt.timedelta(days=300)),
                    _balance("USD", 0, 600000),
                ],
            )
            started = time.perf_counter()
            await js.publish(
                PROFILE_SUBJECT, arriving.SerializeToString(), headers=_headers(f"r-{n}-1")
            )
            decided_ms.append(await wait_for(party_id, "offer_decided", started))
            leaving = profile_events.ProfileChanged(
                party_id=party_id,
                profile_version=2,
                change_time=_stamp(now),
                cause=profile_events.CHANGE_CAUSE_SOURCE_EVENT,
                facts=[_balance("USD", 600000, 0)],
            )
            started = time.perf_counter()
            await js.publish(
                PROFILE_SUBJECT, leaving.SerializeToString(), headers=_headers(f"r-{n}-2")
            )
            withdrawn_ms.append(await wait_for(party_id, "offer_withdrawn", started))
            while not arrived.empty():  # other offers decided for the same change
                arrived.get_nowait()
    finally:
        await client.close()
    say(latency_line("ProfileChanged → OfferDecided", decided_ms, 40))
    say(latency_line("ProfileChanged → OfferWithdrawn", withdrawn_ms, 40))


# --- the outbound sweep --------------------------------------------------------------------

SWEPT_OFFER = "bench_launch"


def _launched_offer() -> offers_pb2.Offer:
    """An outbound marketing offer for every USD holder, launched after the parties are in."""
    return offers_pb2.Offer(
        offer_id=SWEPT_OFFER,
        names=offers_pb2.OfferNames(zh_cn="新上线的美元理财", en="New USD wealth product"),
        product_code="BENCH-LAUNCH",
        category=offers_pb2.OFFER_CATEGORY_MARKETING,
        channels=[offers_pb2.CHANNEL_SMS],
        eligibility=['assets["USD"] >= 1000.0'],
        value_cny="300",
        outbound=True,
        templates=[offers_pb2.ChannelTemplate(channel=offers_pb2.CHANNEL_SMS, template_id="l")],
        depends_on=[offers_pb2.FACT_KIND_ASSETS, offers_pb2.FACT_KIND_CONSENT],
    )


async def _sweep_progress(database: Database) -> tuple[bool, str, bool]:
    """(the sweep is for the launched offer, its cursor, finished)."""
    async with database.session() as session:
        row = (await session.execute(sa.select(offers_schema.outbound_sweep))).first()
    if row is None:
        return False, "", False
    launched = any(entry.startswith(f"{SWEPT_OFFER}:") for entry in row.offers)
    return launched, row.cursor, row.finished


async def _sweep(address: str, database_url: str, nats_url: str, party_ids: list[str]) -> None:
    """Has one more replica, checking every half second, sweep every party for an outbound offer
    launched once it serves (the benchmark's replicas check only hourly), while one caller asks
    that replica for decisions; then as many calls again with the replica idle."""
    database = Database(database_url)
    sweeper, port = service_process(
        "zhike_offers", database_url, nats_url, {"ZHIKE_SWEEP_CHECK_SECONDS": "0.5"}
    )
    request = _app_requests(party_ids, random.Random(11))
    try:
        await wait_serving(port, timeout=120)
        async with authorised_channel(f"127.0.0.1:{port}", roles=["call_centre_agent"]) as channel:
            decide = offers_grpc.OffersServiceStub(channel).DecideOffers
            for _ in range(100):  # warm-up: connections, caches
                await decide(request(), timeout=30)
            async with authorised_channel(address, roles=["marketing_operations"]) as admin:
                await offers_grpc.OffersServiceStub(admin).CreateOffer(
                    offers_pb.CreateOfferRequest(offer=_launched_offer()), timeout=30
                )
            swept = asyncio.Event()
            during: list[float] = []

            async def caller() -> None:
                while not swept.is_set():
                    started = time.perf_counter()
                    await decide(request(), timeout=30)
                    during.append((time.perf_counter() - started) * 1000)

            calls = asyncio.create_task(caller())
            first_chunk: float | None = None
            while True:
                launched, cursor, finished = await _sweep_progress(database)
                now = time.perf_counter()
                if launched and cursor and first_chunk is None:
                    first_chunk = now
                if launched and finished:
                    break
                await asyncio.sleep(0.05)
            swept.set()
            await calls
            idle: list[float] = []
            for _ in during:
                started = time.perf_counter()
                await decide(request(), timeout=30)
                idle.append((time.perf_counter() - started) * 1000)
        assert first_chunk is not None, "the sweep finished before its first chunk was seen"
        elapsed = now - first_chunk
        async with database.session() as session:
            parties = await session.scalar(
                sa.select(sa.func.count())
                .select_from(offers_schema.party)
                .where(offers_schema.party.c.merged_into.is_(None))
            )
            decided = await session.scalar(
                sa.select(sa.func.count())
                .select_from(offers_schema.outbound_decision)
                .where(offers_schema.outbound_decision.c.offer_id == SWEPT_OFFER)
            )
    finally:
        sweeper.terminate()
        sweeper.wait(timeout=60)
        await database.dispose()
    say(
        f"outbound sweep, one replica: {parties or 0:,} parties in {elapsed:.1f} s after its "
        f"first chunk ({(parties or 0) / elapsed:,.0f} parties/s); the launched offer decided "
        f"for {decided or 0:,}"
    )
    say(latency_line("DecideOffers on it while it sweeps", during, 40))
    say(latency_line("DecideOffers on it afterwards", idle, 40))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.offers")
    parser.add_argument("--parties", type=int, default=DEFAULT_PARTIES)
    parser.add_argument("--offers", type=int, default=DEFAULT_OFFERS)
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    parser.add_argument("--callers", type=int, default=DEFAULT_CALLERS)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[TARGET_RATE],
        help="open-loop rates to run DecideOffers at, one after another (the trivial call "
        "runs at the first)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=DEFAULT_REPLICAS,
        help="offers replicas behind the client's round robin (the chart deploys 2)",
    )
    parser.add_argument("--latency-samples", type=int, default=DEFAULT_LATENCY_SAMPLES)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    say(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; PostgreSQL 15 (throwaway cluster)"
    )
    party_ids = [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"zhike-bench-party-{n}")) for n in range(args.parties)
    ]
    with throwaway_postgres() as cluster, tempfile.TemporaryDirectory() as scratch:
        database_url = cluster.create_database()
        nats_server = NatsServer(Path(scratch) / "nats")
        nats_server.start()
        asyncio.run(_profile_stream(nats_server.url))
        # The offers the benchmark creates would start the outbound sweep a minute in, deciding
        # every party again while the calls are timed: this measures decisions in a steady state.
        quiet = {"ZHIKE_SWEEP_CHECK_SECONDS": "3600"}
        replicas = [
            service_process("zhike_offers", database_url, nats_server.url, quiet)
            for _ in range(args.replicas)
        ]
        try:
            for _process, port in replicas:
                asyncio.run(wait_serving(port, timeout=120))
            addresses = [f"127.0.0.1:{port}" for _process, port in replicas]
            live = asyncio.run(_top_up_catalogue(addresses[0], args.offers, args.seed))
            say(f"catalogue: {live} live offers")
            asyncio.run(_load_parties(nats_server.url, party_ids, args.seed))
            processes = platform_processes(
                cluster, nats_server, offers=lambda: [process.pid for process, _port in replicas]
            )
            with client_collector_paused():
                asyncio.run(_decide(addresses, party_ids, args, processes))
                asyncio.run(_reaction(nats_server.url, args.latency_samples))
            asyncio.run(_sweep(addresses[0], database_url, nats_server.url, party_ids))
        finally:
            for process, _port in replicas:
                process.terminate()
                process.wait(timeout=60)
            nats_server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
