"""Storage plumbing: an async SQLAlchemy engine chosen by URL alone.

SQLite (embedded, the laptop default) and PostgreSQL (clusters) run the same code. On SQLite every
transaction starts with BEGIN IMMEDIATE: writers queue on the file lock up front instead of failing
with "database is locked" when a read later turns into a write. Within a process they queue for
its one connection, in arrival order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import ssl
import time
from collections import deque
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

from zhike_runtime.settings import ServiceSettings

# Errors that mean "the database is not reachable now" rather than "this request is wrong";
# among them no pooled connection coming free within the pool's timeout (PoolTimeout).
DISCONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    ConnectionError,
    OSError,
)
_PING_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *DISCONNECT_ERRORS)

# How long an SQLite transaction waits for its turn: for the process's one connection, and for
# the file lock held by another process (busy_timeout).
SQLITE_WAIT_SECONDS = 30
# How long a service's PostgreSQL connection waits for a statement's answer: a request's
# statement that runs longer has no caller left to answer.
COMMAND_TIMEOUT_SECONDS = 30.0


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every time this platform stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def to_utc(value: dt.datetime) -> dt.datetime:
    """A time as it is stored and compared: in UTC (SQLite keeps a time's wall clock and
    compares it as text, so 09:30+08:00 would read as 09:30 UTC); a naive time is UTC."""
    return as_utc(value).astimezone(dt.UTC)


def optional_to_utc(value: dt.datetime | None) -> dt.datetime | None:
    """`to_utc` of a time that may be missing."""
    return None if value is None else to_utc(value)


def insert_for(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT on both engines (SQLAlchemy has it per dialect)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# Rows a retention job deletes per statement. Each chunk is a short transaction of its own, so
# a large backlog (the first round after an upgrade or a long outage) never holds its locks, or
# every replica's rounds, for minutes.
DELETE_CHUNK = 5000


async def delete_chunk(
    session: AsyncSession,
    table: sa.Table,
    key: sa.ColumnElement[Any],
    where: sa.ColumnElement[bool],
    limit: int,
) -> int:
    """Deletes up to `limit` rows of `table` matching `where`, chosen by their `key` (one short
    statement); returns how many. `where` applies to the rows deleted as well as to the ones
    chosen, so `key` may be one part of a composite key that `where` pins the rest of."""
    chunk = sa.select(key).where(where).limit(limit).scalar_subquery()
    result = await session.execute(sa.delete(table).where(where, key.in_(chunk)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def delete_in_chunks(
    database: Database,
    table: sa.Table,
    key: sa.ColumnElement[Any],
    where: sa.ColumnElement[bool],
    chunk: int = DELETE_CHUNK,
) -> int:
    """Deletes every row of `table` matching `where`, up to `chunk` rows per transaction;
    returns how many."""
    total = 0
    while True:
        async with database.session() as session, session.begin():
            deleted = await delete_chunk(session, table, key, where, chunk)
        total += deleted
        if deleted < chunk:
            return total


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a database error, wherever the driver keeps it: on SQLAlchemy's `orig`
    (asyncpg's adapter, psycopg's pgcode) or on the driver's own exception behind it."""
    original = getattr(error, "orig", None)
    driver = original.__cause__ if original is not None else None
    code = (
        getattr(original, "sqlstate", None)
        or getattr(original, "pgcode", None)
        or getattr(driver, "sqlstate", None)
    )
    return str(code) if code else None


def is_disconnect(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, DISCONNECT_ERRORS)


def postgres_ssl(mode: str | None, root_cert: Path | None) -> ssl.SSLContext | str | None:
    """asyncpg's `ssl` argument for a libpq sslmode (ZHIKE_DATABASE_SSL_MODE). The verifying
    modes trust `root_cert` alone, not the system's roots: the bank's database CA signs the
    server, and a certificate from any public CA must not pass. None: as the URL says."""
    if mode not in ("verify-ca", "verify-full"):
        return mode
    if root_cert is None:
        raise ValueError(f"sslmode {mode} needs a root certificate")
    context = ssl.create_default_context(cafile=str(root_cert))
    # verify-ca: the chain only (a server reached by an address its certificate does not name).
    context.check_hostname = mode == "verify-full"
    return context


def database_for(settings: ServiceSettings) -> Database:
    """The service's database as its settings describe it, TLS included."""
    return Database(
        settings.database_url,
        settings.database_pool_size,
        tls=postgres_ssl(settings.database_ssl_mode, settings.database_ssl_root_cert),
    )


class _InTurnQueue(AsyncAdaptedQueue[Any]):
    """The asyncio pool's queue of free connections, lent in the order they were asked for.

    SQLAlchemy's takes a free connection without waiting whenever one is there, and asyncio's
    queue wakes a waiter without handing it the connection, so whoever asks in between takes it.
    A consumer applying event after event took the connection back each time ahead of those
    waiting: on SQLite's one connection, GetProfile, the outbox relay and the other consumers
    waited up to 0.9 s each behind it. Here a connection given back goes to the longest waiter,
    and nobody takes one while others wait (the same trouble: sqlx#453, mysql_async#212)."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def put_nowait(self, item: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        super().put_nowait(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        # Never more connections come back than the pool holds: there is always room.
        self.put_nowait(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not any(not waiter.done() for waiter in self._waiters):
            try:
                return self.get_nowait()
            except Empty:
                if not block:
                    raise
        elif not block:
            raise Empty()
        return await_(self._wait_turn(timeout))

    async def _wait_turn(self, timeout: float | None) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows the caller's
        # cancellation when the connection arrives in the same turn, and a service stopping
        # then waited for ever for a task that would not end.
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection just as it gave up (timed out, or its caller cancelled
                # it): the next in line gets it rather than the pool losing it.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()
            if isinstance(error, TimeoutError):
                raise Empty() from None
            raise


class _InTurnPool(AsyncAdaptedQueuePool):
    _queue_class = _InTurnQueue


class Database:
    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        *,
        tls: ssl.SSLContext | str | None = None,
        pool_timeout_seconds: float = 10.0,
        command_timeout_seconds: float | None = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        """`command_timeout_seconds` (PostgreSQL): how long the client waits for a statement's
        answer before it gives up (None: for ever). The migrations' own connection has none
        (zhike_runtime.migrations): their server-side timeouts bound them."""
        parsed = make_url(url)
        self.url = url
        self.tls = tls
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # One connection, lent in turn. Every transaction here is a writer (BEGIN
            # IMMEDIATE), so SQLite runs one at a time whatever the pool; with several
            # connections, those waiting for the file lock sleep in SQLite's busy handler and
            # retry, and a reader kept losing to back-to-back consumer batches: reads waited
            # 2-7 s behind 4 busy writers. The pool lends it in turn (`_InTurnQueue`): about
            # 0.1 s there. A turn is waited for as long as SQLite waits for its file lock.
            kwargs = {
                "pool_size": 1,
                "max_overflow": 0,
                "pool_timeout": SQLITE_WAIT_SECONDS,
                "connect_args": {"timeout": SQLITE_WAIT_SECONDS},
            }
        else:
            kwargs |= {
                # At most pool_size connections, each kept once opened: overflow connections
                # were opened and closed with every burst beyond the pool (a backend forked,
                # types introspected and statements prepared again each time: 418 sessions in
                # one notifications benchmark), and it sent about 15% fewer SMS a second.
                "pool_size": pool_size,
                "max_overflow": 0,
                "pool_timeout": pool_timeout_seconds,
                "connect_args": {
                    "timeout": 5,
                    # An IN list renders one placeholder per value, so each list length is its
                    # own statement: the default cache of 100 churned and re-prepared (a round
                    # trip each) on the identity service's hot path.
                    "prepared_statement_cache_size": 1000,
                    # Short transactional queries: JIT compiling one whose estimated cost
                    # crosses jit_above_cost took 5-15 ms to save microseconds.
                    "server_settings": {"jit": "off"},
                },
            }
            if command_timeout_seconds is not None:
                kwargs["connect_args"]["command_timeout"] = command_timeout_seconds
            if tls is not None:  # postgres_ssl(): an sslmode, or a context that verifies
                kwargs["connect_args"]["ssl"] = tls
        # Bound values are names, ID numbers and phones: never in a log line or an exception's
        # text (SQLAlchemy renders them into both unless told not to).
        kwargs["hide_parameters"] = True
        kwargs["poolclass"] = _InTurnPool
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        else:
            _check_connections_out(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def session(self) -> AsyncSession:
        return self.sessions()

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when a trivial query answers within the timeout (used by readiness)."""
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except _PING_ERRORS:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


# A pooled connection unused this long is pinged before it is lent: one dropped without a word
# (a firewall's or a NAT's idle timeout) looks open until a statement fails on it.
IDLE_BEFORE_PING_SECONDS = 30.0


def _check_connections_out(engine: AsyncEngine) -> None:
    """Disconnect handling without a round trip per checkout. SQLAlchemy's pool_pre_ping pings
    every connection it lends, and with asyncpg a ping is three round trips (BEGIN, a query,
    ROLLBACK): about 0.4 ms of CPU and 0.5-0.9 ms of each unit of work's latency. Instead a
    connection the database closed (a restart, a failover, a terminated backend: asyncpg sees
    the socket close) is replaced without asking, and only one idle for
    IDLE_BEFORE_PING_SECONDS is pinged. Raising DisconnectionError makes the pool discard the
    connection and lend another (a new one if need be)."""

    # The driver's errors as SQLAlchemy's adapter raises them (not sqlalchemy.exc's classes).
    driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine.sync_engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the database closed the connection")
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since > IDLE_BEFORE_PING_SECONDS:
            try:
                dbapi_connection.ping()
            except (driver_error, OSError, TimeoutError) as error:
                raise DisconnectionError("an idle connection did not answer") from error


def _enable_wal(cursor: Any) -> None:
    """WAL is a property of the file: set once, every later connection finds it. Switching
    needs a moment alone with the file and SQLite answers "locked" at once rather than wait, so
    connections racing to open a new file retry."""
    for attempt in range(50):
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.02)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below (pysqlite's own is unreliable).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_WAIT_SECONDS * 1000}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
