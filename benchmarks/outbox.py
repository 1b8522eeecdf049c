"""The outbox relay on PostgreSQL: what one relay round costs as sent events pile up.

Every service writes its events through the runtime's outbox; its relay publishes them and marks
them sent. Sent rows stay in `outbox_event` for `ZHIKE_OUTBOX_RETENTION_SECONDS` (7 days), and
every sent row leaves a dead row version behind until VACUUM. This measures whether a relay
round, the one the services run after each commit, costs the same after many events as after a
few. On a fresh database it does not: the table has no statistics yet, or an empty table's,
and until autovacuum and autoanalyze first run (about a minute of traffic here) each round costs
more the more events went before. After that the rounds are flat again. A benchmark that
measures a service in its first minute on a new database includes that cost.

1. Starts a throwaway PostgreSQL 15 cluster and a nats-server, and applies the runtime's
   migrations.
2. `--rounds` times: commits 2 or 3 events (as a link or a decision does), then runs one relay
   round (`OutboxRelay.publish_batch`: select the unsent rows, publish, mark them sent).
3. Prints the mean round time per block of rounds, then the table's live and dead rows and
   whether autovacuum ran.

Prints figures; never asserts.

    python -m benchmarks.outbox [--rounds N] [--block B]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from benchmarks.common import say
from zhike.testing.v1 import events_pb2
from zhike_runtime.db import Database
from zhike_runtime.events.bus import EventBus, StreamSpec
from zhike_runtime.events.outbox import OutgoingEvent, add_to_outbox
from zhike_runtime.events.relay import OutboxRelay
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.processes import NatsServer, throwaway_postgres

STREAM = StreamSpec("ZHIKE_BENCH_OUTBOX", ("zhike.testing.v1.>",))
SUBJECT = "zhike.testing.v1.ping"


async def _measure(database_url: str, nats_url: str, rounds: int, block: int) -> None:
    database = Database(database_url)
    await apply_migrations(database, None)
    bus = EventBus(nats_url, client_name="bench-outbox")
    bus.add_stream(STREAM)
    await bus.run()
    relay = OutboxRelay(database, bus, Telemetry("bench"))
    try:
        round_ms: list[float] = []
        for n in range(rounds):
            events = [
                OutgoingEvent(SUBJECT, events_pb2.Ping(key=f"{n}-{k}"))
                for k in range(3 if n % 3 == 0 else 2)
            ]
            async with database.session() as session, session.begin():
                await add_to_outbox(session, events)
            started = time.perf_counter()
            published = await relay.publish_batch()
            round_ms.append((time.perf_counter() - started) * 1000)
            if published != len(events):
                raise RuntimeError(f"round {n} published {published} of {len(events)} events")
            if (n + 1) % block == 0:
                recent = round_ms[-block:]
                say(
                    f"rounds {n + 2 - block:>6}-{n + 1:<6} mean {sum(recent) / block:6.3f} ms "
                    f"per relay round"
                )
        async with database.session() as session:
            row = (
                await session.execute(
                    sa.text(
                        "SELECT n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count "
                        "FROM pg_stat_user_tables WHERE relname = 'outbox_event'"
                    )
                )
            ).one()
        say(
            f"outbox_event: {row[0]} live rows, {row[1]} dead row versions; autovacuum ran "
            f"{row[2]} time(s), autoanalyze {row[3]}"
        )
    finally:
        await bus.close()
        await database.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outbox")
    parser.add_argument("--rounds", type=int, default=24_000)
    parser.add_argument("--block", type=int, default=2_000)
    args = parser.parse_args(argv)
    with throwaway_postgres() as cluster, tempfile.TemporaryDirectory() as scratch:
        nats_server = NatsServer(Path(scratch) / "nats")
        nats_server.start()
        try:
            asyncio.run(
                _measure(cluster.create_database(), nats_server.url, args.rounds, args.block)
            )
        finally:
            nats_server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
