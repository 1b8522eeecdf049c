"""Where DecideOffers reads its inputs and logs its arbitration (`DecisionStore`).

The decision log is written with group commit: the entries that arrive while a commit runs go
together in the next one (`Rounds`), each caller awaiting the commit of its own entry, so a
decision returns only once its entry is durable and concurrent decisions share one commit.

On PostgreSQL the store drives asyncpg directly on a few connections of the engine's pool that
it holds between uses (`HeldConnections`): no pool check-out, BEGIN/COMMIT or SQLAlchemy
statement machinery per call, which together cost several times what the statements do. A
read is one statement for one party (by equality, so PostgreSQL plans it once, where a
statement for several parties at once is planned on every call and costs more than the reads
it saves); the log's round is one pipelined INSERT of every waiting entry and one commit. A
connection that breaks is given back as invalid and the work is tried once more on a fresh one;
a statement PostgreSQL refuses fails its callers alone.

On SQLite (one writer, embedded) reads go through a unit of work as everywhere else, and the log
rounds commit the waiting entries in one transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zhike_offers.domain.contact_policy import ContactEvent, ContactKind
from zhike_offers.domain.model import Arbitration, ContactPreferences
from zhike_offers.domain.ports import DecisionInputs, StoredParty
from zhike_offers.storage import records
from zhike_offers.storage.repository import SqlOffersUnitOfWork, log_row
from zhike_offers.storage.schema import decision_log
from zhike_runtime.db import Database, as_utc
from zhike_runtime.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Calls served by one round at most: entries in one log commit.
MAX_ROUND = 256


class Rounds(Generic[T, R]):
    """Runs `serve` over the items submitted while the previous round ran, one round at a time;
    `submit` returns the item's result once its round is done. A round that raises fails each
    of its callers with that error; a caller that gives up (cancelled) leaves its round alone."""

    def __init__(self, serve: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self._serve = serve
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        round_: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                round_ = self._waiting[:MAX_ROUND]
                del self._waiting[:MAX_ROUND]
                try:
                    results = await self._serve([item for item, _future in round_])
                except Exception as error:  # noqa: BLE001 - it is each caller's error
                    for _item, future in round_:
                        if not future.done():
                            future.set_exception(error)
                else:
                    for (_item, future), result in zip(round_, results, strict=True):
                        if not future.done():
                            future.set_result(result)
                round_ = []
        finally:
            self._running = None
            # Cancelled (the service stopping): nobody is left waiting for ever.
            for _item, future in [*round_, *self._waiting]:
                if not future.done():
                    future.set_exception(Unavailable("the service is stopping"))
            self._waiting = []


class HeldConnection:
    """One connection of the engine's pool, checked out on first use and kept: `run` hands its
    asyncpg connection to one piece of work at a time. A connection that closes under the work
    (the database restarted, the backend was terminated) is given back as invalid and the work
    runs once more on a fresh one; that failing too is `Unavailable`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # asyncpg.Connection
        self._lock = asyncio.Lock()
        self._closed = False

    async def run(self, work: Callable[[Any], Awaitable[R]]) -> R:
        async with self._lock:
            for attempt in (1, 2):
                driver = await self._open()
                try:
                    return await work(driver)
                except Exception:
                    if not driver.is_closed():
                        raise  # refused by PostgreSQL: the connection is still good
                    await self._discard()
                    if attempt == 2:
                        raise Unavailable("the database connection was lost") from None
                    log.warning("decision connection lost; retrying on a new one")
        raise AssertionError("unreachable")

    async def _open(self) -> Any:
        if self._closed:
            raise Unavailable("the service is stopping")
        if self._connection is None:
            connection = await self._engine.connect()
            raw = await connection.get_raw_connection()
            self._connection, self._driver = connection, raw.driver_connection
        return self._driver

    async def _discard(self) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        if connection is not None:
            await connection.invalidate()
            await connection.close()

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            connection, self._connection, self._driver = self._connection, None, None
            if connection is not None:
                await connection.close()


class HeldConnections:
    """A few `HeldConnection`s, each lent to one piece of work at a time (the others wait for
    one to be free)."""

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self._all = [HeldConnection(engine) for _ in range(size)]
        self._idle: asyncio.Queue[HeldConnection] = asyncio.Queue()
        for held in self._all:
            self._idle.put_nowait(held)

    async def run(self, work: Callable[[Any], Awaitable[R]]) -> R:
        held = await self._idle.get()
        try:
            return await held.run(work)
        finally:
            self._idle.put_nowait(held)

    async def close(self) -> None:
        for held in self._all:
            await held.close()


# A decision's read in one statement: the party's row with each of its facts, then its contacts
# since a time, then the catalogue's revision (in profile_version; `part` tells which). JSON
# comes back as text from asyncpg.
_READ = """
SELECT 'p' AS part, p.profile_version, p.merged_into, p.forwarding_ended,
       p.do_not_contact, p.personalised_offers,
       p.preferences_version, p.preferences_updated_at, p.opted_out_channels,
       f.fact_key, f.value::text AS value,
       NULL::timestamptz AS at, NULL AS offer_id, NULL AS channel, NULL AS kind,
       NULL::boolean AS marketing
FROM party p LEFT JOIN party_fact f ON f.party_id = p.party_id
WHERE p.party_id = $1
UNION ALL
SELECT 'c', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       c.at, c.offer_id, c.channel, c.kind, c.marketing
FROM contact_event c
WHERE c.party_id = $1 AND c.at > $2
UNION ALL
SELECT 'r', (SELECT coalesce(sum(o.version), 0) FROM offer o), NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
"""

_LOG_COLUMNS = tuple(column.name for column in decision_log.columns)
_LOG_INSERT = (
    f"INSERT INTO decision_log ({', '.join(_LOG_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_LOG_COLUMNS) + 1))}) "
    # A round retried after a lost connection may find its entries committed already.
    "ON CONFLICT (arbitration_id) DO NOTHING"
)


def _log_values(arbitration: Arbitration) -> tuple[Any, ...]:
    row = log_row(arbitration)
    row["entry"] = json.dumps(row["entry"], separators=(",", ":"))
    return tuple(row[name] for name in _LOG_COLUMNS)


class PostgresDecisionStore:
    def __init__(self, engine: AsyncEngine, *, readers: int) -> None:
        self._readers = HeldConnections(engine, readers)
        self._writer = HeldConnection(engine)
        self._logs: Rounds[Arbitration, None] = Rounds(self._log_round)

    async def read(self, party_id: str, since: dt.datetime) -> DecisionInputs:
        async def fetch(driver: Any) -> list[Any]:
            rows: list[Any] = await driver.fetch(_READ, party_id, since)
            return rows

        rows = await self._readers.run(fetch)
        party: Any = None
        facts: dict[str, Any] = {}
        contacts: list[ContactEvent] = []
        revision = 0
        for row in rows:
            if row["part"] == "p":
                party = row
                if row["fact_key"] is not None:
                    facts[row["fact_key"]] = json.loads(row["value"])
            elif row["part"] == "r":
                revision = int(row["profile_version"])
            else:
                contacts.append(
                    ContactEvent(
                        row["at"],
                        row["offer_id"],
                        row["channel"],
                        ContactKind(row["kind"]),
                        row["marketing"],
                    )
                )
        found = None if party is None else _party(party_id, party, facts)
        return DecisionInputs(found, contacts, revision)

    async def log(self, arbitration: Arbitration) -> None:
        await self._logs.submit(arbitration)

    async def close(self) -> None:
        await self._readers.close()
        await self._writer.close()

    async def _log_round(self, arbitrations: list[Arbitration]) -> list[None]:
        values = [_log_values(arbitration) for arbitration in arbitrations]

        async def insert(driver: Any) -> None:
            # One pipelined statement per entry and one commit for them all.
            await driver.executemany(_LOG_INSERT, values)

        await self._writer.run(insert)
        return [None] * len(arbitrations)


def _party(party_id: str, row: Any, facts: dict[str, Any]) -> StoredParty:
    updated_at = row["preferences_updated_at"]
    return StoredParty(
        party_id=party_id,
        profile_version=int(row["profile_version"]),
        merged_into=row["merged_into"] or "",
        forwarding_ended=bool(row["forwarding_ended"]),
        facts=facts,
        preferences=ContactPreferences(
            party_id,
            bool(row["do_not_contact"]),
            bool(row["personalised_offers"]),
            int(row["preferences_version"]),
            None if updated_at is None else as_utc(updated_at),
            records.channel_set(row["opted_out_channels"]),
        ),
    )


class UnitDecisionStore:
    """Reads in a unit of work of their own; log entries waiting together committed in one."""

    def __init__(self, units: Callable[[], SqlOffersUnitOfWork]) -> None:
        self._units = units
        self._logs: Rounds[Arbitration, None] = Rounds(self._log_round)

    async def read(self, party_id: str, since: dt.datetime) -> DecisionInputs:
        async with self._units() as unit:
            return await unit.inputs.read(party_id, since)

    async def log(self, arbitration: Arbitration) -> None:
        await self._logs.submit(arbitration)

    async def close(self) -> None:
        return None

    async def _log_round(self, arbitrations: Sequence[Arbitration]) -> list[None]:
        async with self._units() as unit:
            await unit.decisions.add_many(arbitrations)
            await unit.commit()
        return [None] * len(arbitrations)


def decision_store(
    database: Database, units: Callable[[], SqlOffersUnitOfWork], *, pool_size: int
) -> PostgresDecisionStore | UnitDecisionStore:
    """The store for the database: on PostgreSQL asyncpg's own, holding a third of the pool (at
    most 4) for reads and one connection for the log; units of work on SQLite, or when the pool
    is too small to spare connections (the consumer, the relay and the admin RPCs need some)."""
    if database.is_postgres and pool_size >= _SMALLEST_POOL:
        return PostgresDecisionStore(database.engine, readers=min(pool_size // 3, 4))
    return UnitDecisionStore(units)


_SMALLEST_POOL = 3
