"""Profile aggregation on PostgreSQL: ingestion rate, event → ProfileChanged, GetProfile at scale.

1. Starts a throwaway PostgreSQL 15 cluster (pg_stat_statements on), a nats-server, and the
   identity and profile services as deployed (`python -m zhike_<service>`, their own processes).
2. Simulates a bank (`zhike_simulator.simulation.simulate`: `--customers` people over 90 days,
   their records in every source system and their activity) and links every record through
   identity's `LinkSourceRecord`, as `zhike simulate` does; waits until the profile has applied
   identity's events.
3. **Ingestion.** Stops the profile service, publishes every source event to the source stream
   (`zhike.source.v1.<system>`, the streaming adapters' door), starts `--replicas` profile
   processes (2, as the Helm chart deploys; they share the durable consumer) and measures how
   fast they apply the backlog (events/s, sustained: between 10 % and 90 % of the backlog), with
   consumer batching as configured (`--batch-size`). Then where the time went: CPU seconds of
   the profile processes, PostgreSQL and nats-server, and the database statements per event.
   Every later step runs against one profile process.
4. **Event → ProfileChanged.** One balance change at a time on an idle service: from publishing
   the source event until the party's ProfileChanged arrives (p50/p99).
5. **GetProfile at scale.** Copies the simulated bank's stored facts, as the service wrote them,
   until the store holds `--parties` parties (each copy under new party ids and record ids:
   the same shapes, histories and skews), ANALYZE, then GetProfile by party id for random
   parties, one caller at a time, alternating with a trivial gRPC call to the same server (the
   health Check, the floor any RPC pays); then 8 concurrent callers.

Prints figures; never asserts.

    python -m benchmarks.profile [--customers N] [--parties P] [--calls C] [--batch-size B]
                                 [--replicas R]

`--customers 300 --parties 20000 --calls 300` is a quick check (about two minutes); the default
is the issue's figure: 1,000,000 parties stored.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import nats
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.msg import Msg

from benchmarks.common import (
    CpuMeter,
    client_collector_paused,
    dsn,
    latency_line,
    percentile,
    platform_processes,
    say,
    service_process,
)
from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.transport.source_codec import stream_headers, subject_for
from zhike_runtime.testing.processes import (
    NatsServer,
    PostgresCluster,
    throwaway_postgres,
)
from zhike_runtime.testing.services import (
    TEST_ISSUER,
    authorised_channel,
    wait_serving,
)
from zhike_simulator.send import send
from zhike_simulator.simulation import Simulation, simulate

DEFAULT_CUSTOMERS = 1_500
DEFAULT_PARTIES = 1_000_000
DEFAULT_CALLS = 2_000
DEFAULT_LATENCY_SAMPLES = 300
DEFAULT_BATCH_SIZE = 256
# Profile replicas applying the ingestion backlog: the Helm chart's default replicaCount.
DEFAULT_REPLICAS = 2
CONCURRENT_CALLERS = 8
INGEST_TARGET = 2_000.0
GET_PROFILE_TARGET_MS = 10.0

SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "shared_preload_libraries": "pg_stat_statements",
}
SOURCE_STREAM = "ZHIKE_SOURCE"
SOURCE_CONSUMER = "profile-source"
IDENTITY_STREAM = "ZHIKE_IDENTITY"
IDENTITY_CONSUMER = "profile-identity"
PROFILE_CHANGED = "zhike.profile.v1.profile_changed"

# The profile's tables, copied to grow the store; how each copy renames a column so that keys
# stay unique and each copy's parties own each copy's records.
PROFILE_TABLES = (
    "profile",
    "profile_segment",
    "profile_source_record",
    "account",
    "account_balance",
    "balance_history",
    "monthly_activity",
    "interaction",
    "consent",
    "preference",
    "risk_assessment",
)
RENAMED = {
    "party_id": "md5({c} || '~' || k)::uuid::text",
    "linked_party_id": "md5({c} || '~' || k)::uuid::text",
    "merged_into": "md5({c} || '~' || k)::uuid::text",  # NULL stays NULL
    "source_record_id": "{c} || '~' || k",
    "event_id": "{c} || '~' || k",
}


async def _sql(cluster: PostgresCluster, database: str, *statements: str) -> None:
    connection = await asyncpg.connect(dsn(cluster, database))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _fetchval(cluster: PostgresCluster, database: str, query: str) -> object:
    connection = await asyncpg.connect(dsn(cluster, database))
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


@dataclass
class Service:
    module: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def _start(module: str, database_url: str, nats_url: str, extra: dict[str, str]) -> Service:
    process, port = service_process(module, database_url, nats_url, extra)
    return Service(module, port, process)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        await asyncio.sleep(0.25)


async def _drained(nats_url: str, stream: str, durable: str, timeout: float) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()

        async def empty() -> bool:
            info = await js.consumer_info(stream, durable)
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await _until(empty, timeout, f"{durable} still has events")
    finally:
        await client.close()


async def _publish(nats_url: str, events: Sequence[source_pb.SourceEvent]) -> float:
    """Every event on its source system's subject, as an adapter publishes it; seconds taken."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        started = time.perf_counter()
        window = 512
        for first in range(0, len(events), window):
            await asyncio.gather(
                *(
                    js.publish(
                        subject_for(event.source_record.source_system),
                        event.SerializeToString(),
                        headers=stream_headers(event),
                    )
                    for event in events[first : first + window]
                )
            )
        return time.perf_counter() - started
    finally:
        await client.close()


async def _ingestion(
    nats_url: str,
    total: int,
    replicas: Sequence[Service],
    cluster: PostgresCluster,
    nats_server: NatsServer,
) -> None:
    """Samples the source consumer's progress until the backlog is applied (by every replica:
    they share the durable consumer, as replicas in a cluster do)."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        meter = CpuMeter(
            platform_processes(
                cluster, nats_server, profile=lambda: [replica.process.pid for replica in replicas]
            )
        )
        samples: list[tuple[float, int]] = []
        started = time.perf_counter()
        while True:
            info = await js.consumer_info(SOURCE_STREAM, SOURCE_CONSUMER)
            applied = total - info.num_pending - info.num_ack_pending
            samples.append((time.perf_counter() - started, applied))
            if applied >= total:
                break
            if time.perf_counter() - started > 1800:
                raise TimeoutError(f"{applied}/{total} events applied after 30 minutes")
            await asyncio.sleep(0.25)
        elapsed = samples[-1][0]
        cpu = meter.line(total, elapsed, "event")
    finally:
        await client.close()

    def first_reaching(count: float) -> float:
        return next(at for at, applied in samples if applied >= count)

    low, high = first_reaching(0.1 * total), first_reaching(0.9 * total)
    sustained = 0.8 * total / (high - low) if high > low else float("nan")
    say(
        f"ingestion by {len(replicas)} profile "
        + ("replica" if len(replicas) == 1 else "replicas")
        + f": {total} source events applied in {elapsed:.1f} s from the service's start "
        f"({total / elapsed:.0f}/s overall); sustained {sustained:.0f} events/s "
        f"(10 % → 90 % of the backlog), target {INGEST_TARGET:.0f}/s"
    )
    say(cpu)


async def _top_statements(cluster: PostgresCluster, database: str, per: int, what: str) -> None:
    connection = await asyncpg.connect(dsn(cluster, database))
    try:
        where = "dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        rows = await connection.fetch(
            "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements "
            f"WHERE {where} ORDER BY total_exec_time DESC LIMIT 8"
        )
        total = await connection.fetchval(
            f"SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements WHERE {where}"
        )
        calls = await connection.fetchval(
            f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE {where}"
        )
    finally:
        await connection.close()
    say(
        f"  database: {total / per:.3f} ms of execution in {calls / per:.1f} statements per "
        f"{what} (server time only, no round trips)"
    )
    for row in rows:
        query = " ".join(str(row["query"]).split())[:100]
        say(
            f"    {row['total_exec_time'] / per:7.3f} ms  {row['calls'] / per:5.2f}x  "
            f"rows {row['rows'] / max(row['calls'], 1):6.1f}  {query}"
        )


def _balance_events(
    simulation: Simulation, parties: dict[tuple[str, str], str], count: int, seed: int
) -> list[tuple[str, list[source_pb.SourceEvent]]]:
    """`count` (party, events) steps on an idle service: a new USD account on a linked record,
    then balance changes on it, each its own step (the first step opens the account)."""
    rng = random.Random(seed)
    linked = sorted(key for key in parties if key[0] == "core_deposits") or sorted(parties)
    steps: list[tuple[str, list[source_pb.SourceEvent]]] = []
    now = dt.datetime.now(dt.UTC)
    for n in range(count):
        system, record_id = rng.choice(linked)
        account = f"BENCH-{n}"
        key = party_pb2.SourceRecordKey(source_system=system, source_record_id=record_id)
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(now)
        opened = source_pb.SourceEvent(
            source_record=key, event_id=f"bench-{n}-1", event_time=stamp, sequence=1
        )
        opened.account_opened.account_id = account
        opened.account_opened.product_line = source_pb.PRODUCT_LINE_CURRENT_ACCOUNT
        opened.account_opened.product_code = "USD_CURRENT"
        opened.account_opened.currency = "USD"
        opened.account_opened.branch_code = "0101"
        opened.account_opened.open_date.year = now.year
        opened.account_opened.open_date.month = now.month
        opened.account_opened.open_date.day = now.day
        changed = source_pb.SourceEvent(
            source_record=key, event_id=f"bench-{n}-2", event_time=stamp, sequence=2
        )
        changed.balance_changed.account_id = account
        changed.balance_changed.currency = "USD"
        amount = rng.randrange(1, 10_000_00)
        changed.balance_changed.change_minor_units = amount
        changed.balance_changed.balance_minor_units = amount
        steps.append((parties[(system, record_id)], [opened, changed]))
    return steps


async def _event_to_profile_changed(
    nats_url: str, steps: Sequence[tuple[str, list[source_pb.SourceEvent]]]
) -> None:
    """Publishes each step's events and waits for the party's ProfileChanged."""
    client = await nats.connect(nats_url)
    arrived: asyncio.Queue[tuple[float, str]] = asyncio.Queue()

    async def on_message(message: Msg) -> None:
        event = profile_events.ProfileChanged.FromString(message.data)
        await arrived.put((time.perf_counter(), event.party_id))

    try:
        js = client.jetstream()
        await client.subscribe(PROFILE_CHANGED, cb=on_message)
        latencies: list[float] = []
        for party_id, events in steps:
            started = time.perf_counter()
            for event in events:
                await js.publish(
                    subject_for(event.source_record.source_system),
                    event.SerializeToString(),
                    headers=stream_headers(event),
                )
            while True:
                at, party = await asyncio.wait_for(arrived.get(), timeout=30)
                if party == party_id and at >= started:
                    latencies.append((at - started) * 1000)
                    break
            await asyncio.sleep(0.02)
            while not arrived.empty():  # a second change of the same step, if any
                arrived.get_nowait()
    finally:
        await client.close()
    say(latency_line("source event → ProfileChanged", latencies))


async def _replicate(cluster: PostgresCluster, database: str, parties: int) -> None:
    """Copies the stored facts until the store holds about `parties` parties."""
    connection = await asyncpg.connect(dsn(cluster, database))
    try:
        stored = int(await connection.fetchval("SELECT count(*) FROM profile"))
        copies = max(1, -(-parties // stored))
        say(f"growing the store: {stored} parties × {copies} copies")
        started = time.perf_counter()
        await connection.execute("SET synchronous_commit = off")
        for table in PROFILE_TABLES:
            columns = [
                row["column_name"]
                for row in await connection.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = $1 ORDER BY ordinal_position",
                    table,
                )
            ]
            values = [RENAMED.get(c, "{c}").format(c=c) for c in columns]
            table_started = time.perf_counter()
            await connection.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "
                f"FROM {table}, generate_series(1, {copies - 1}) AS k"
            )
            rows = await connection.fetchval(f"SELECT count(*) FROM {table}")
            say(f"  {table:<22} {rows:>11,} rows  {time.perf_counter() - table_started:6.1f} s")
        await connection.execute("VACUUM ANALYZE")
        total = await connection.fetchval("SELECT count(*) FROM profile")
        size = await connection.fetchval(
            "SELECT pg_size_pretty(pg_database_size(current_database()))"
        )
        say(f"store: {total:,} parties, {size}, in {time.perf_counter() - started:.0f} s")
    finally:
        await connection.close()


async def _sample_parties(cluster: PostgresCluster, database: str, count: int) -> list[str]:
    connection = await asyncpg.connect(dsn(cluster, database))
    try:
        rows = await connection.fetch(
            "SELECT party_id FROM profile TABLESAMPLE SYSTEM (1) WHERE merged_into IS NULL"
        )
    finally:
        await connection.close()
    ids = [str(row["party_id"]) for row in rows]
    random.Random(11).shuffle(ids)
    return (ids * (count // max(len(ids), 1) + 1))[:count]


async def _get_profile(port: int, party_ids: Sequence[str]) -> None:
    address = f"127.0.0.1:{port}"
    async with authorised_channel(address, roles=["branch_teller"]) as channel:
        get = profile_grpc.ProfileServiceStub(channel).GetProfile
        health = health_pb2_grpc.HealthStub(channel).Check
        echo_request = health_pb2.HealthCheckRequest(service="")
        for party_id in party_ids[:50]:  # warm-up: connections, plans
            await get(profile_pb.GetProfileRequest(party_id=party_id), timeout=30)
            await health(echo_request, timeout=30)
        profile_ms: list[float] = []
        echo_ms: list[float] = []
        holdings = 0
        for party_id in party_ids:
            started = time.perf_counter()
            await health(echo_request, timeout=30)
            echo_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            response = await get(profile_pb.GetProfileRequest(party_id=party_id), timeout=30)
            profile_ms.append((time.perf_counter() - started) * 1000)
            holdings += len(response.profile.holdings)
        say(latency_line("GetProfile, 1 caller", profile_ms))
        say(latency_line("trivial gRPC call (health Check)", echo_ms))
        say(f"  {holdings / len(party_ids):.1f} holdings per profile read on average")
        if percentile(profile_ms, 0.99) > GET_PROFILE_TARGET_MS:
            say(f"  p99 above the {GET_PROFILE_TARGET_MS:.0f} ms target")

        queue = iter(party_ids)
        loaded: list[float] = []

        async def caller() -> None:
            for party_id in queue:
                started = time.perf_counter()
                await get(profile_pb.GetProfileRequest(party_id=party_id), timeout=30)
                loaded.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CONCURRENT_CALLERS)))
        elapsed = time.perf_counter() - started
        say(latency_line(f"GetProfile, {CONCURRENT_CALLERS} callers", loaded))
        say(f"  throughput: {len(loaded) / elapsed:.0f} profiles/s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--parties", type=int, default=DEFAULT_PARTIES)
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    parser.add_argument("--latency-samples", type=int, default=DEFAULT_LATENCY_SAMPLES)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--replicas",
        type=int,
        default=DEFAULT_REPLICAS,
        help="profile replicas applying the backlog (the chart deploys 2)",
    )
    args = parser.parse_args(argv)

    say(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; PostgreSQL 15 (throwaway cluster)"
    )
    started = time.perf_counter()
    simulation = simulate(args.customers, args.seed, until=dt.date.today())
    say(
        f"simulated {args.customers} customers over {simulation.days} days: "
        f"{len(simulation.records)} records, {len(simulation.events)} source events "
        f"in {time.perf_counter() - started:.1f} s"
    )
    profile_settings = {"ZHIKE_CONSUMER_BATCH_SIZE": str(args.batch_size)}
    with throwaway_postgres() as cluster, tempfile.TemporaryDirectory() as scratch:
        asyncio.run(
            _sql(
                cluster,
                "postgres",
                *(f"ALTER SYSTEM SET {k} = '{v}'" for k, v in SERVER_SETTINGS.items()),
            )
        )
        cluster.stop()
        cluster.start()
        identity_url = cluster.create_database()
        profile_url = cluster.create_database()
        profile_db = profile_url.rsplit("/", 1)[-1]
        nats_server = NatsServer(Path(scratch) / "nats")
        nats_server.start()
        identity = _start("zhike_identity", identity_url, nats_server.url, {})
        profile = _start("zhike_profile", profile_url, nats_server.url, profile_settings)
        try:
            asyncio.run(wait_serving(identity.port, timeout=120))
            asyncio.run(wait_serving(profile.port, timeout=120))
            started = time.perf_counter()
            sent = asyncio.run(
                send(
                    simulation.records,
                    [],
                    identity_target=f"127.0.0.1:{identity.port}",
                    profile_target=f"127.0.0.1:{profile.port}",
                    token=TEST_ISSUER.mint(["source_system"], subject="bench"),
                )
            )
            asyncio.run(_drained(nats_server.url, IDENTITY_STREAM, IDENTITY_CONSUMER, 600))
            say(
                f"linked {len(sent.parties)} records into "
                f"{len(set(sent.parties.values()))} parties through identity, applied by the "
                f"profile, in {time.perf_counter() - started:.1f} s"
            )

            profile.stop()
            events = list(simulation.events)
            seconds = asyncio.run(_publish(nats_server.url, events))
            say(f"published {len(events)} source events in {seconds:.1f} s")
            asyncio.run(
                _sql(cluster, profile_db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            )
            asyncio.run(_sql(cluster, profile_db, "SELECT pg_stat_statements_reset()"))
            replicas = [
                _start("zhike_profile", profile_url, nats_server.url, profile_settings)
                for _ in range(max(args.replicas, 1))
            ]
            profile, others = replicas[0], replicas[1:]
            try:
                asyncio.run(
                    _ingestion(nats_server.url, len(events), replicas, cluster, nats_server)
                )
            finally:
                # The rest of the run measures one process (event → ProfileChanged, GetProfile).
                for replica in others:
                    replica.stop()
            asyncio.run(_top_statements(cluster, profile_db, len(events), "event"))

            asyncio.run(wait_serving(profile.port, timeout=120))
            steps = _balance_events(simulation, sent.parties, args.latency_samples, args.seed)
            with client_collector_paused():
                asyncio.run(_event_to_profile_changed(nats_server.url, steps))

            asyncio.run(_replicate(cluster, profile_db, args.parties))
            party_ids = asyncio.run(_sample_parties(cluster, profile_db, args.calls))
            asyncio.run(_sql(cluster, profile_db, "SELECT pg_stat_statements_reset()"))
            with client_collector_paused():
                asyncio.run(_get_profile(profile.port, party_ids))
            asyncio.run(_top_statements(cluster, profile_db, 2 * len(party_ids), "GetProfile"))
        finally:
            profile.stop()
            identity.stop()
            nats_server.stop()
    say(
        f"targets: ingestion >= {INGEST_TARGET:.0f} events/s; GetProfile p99 <= "
        f"{GET_PROFILE_TARGET_MS:.0f} ms at {DEFAULT_PARTIES:,} parties"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
