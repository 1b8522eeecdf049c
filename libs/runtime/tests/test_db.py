"""Database connections: what every PostgreSQL session of a service is set up with, how a
connection the database dropped is replaced, and the order pooled connections are lent in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from google.rpc import code_pb2
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.util.concurrency import greenlet_spawn

from zhike_runtime import db
from zhike_runtime.db import Database
from zhike_runtime.grpc_errors import status_for
from zhike_runtime.testing.processes import PostgresCluster
from zhike_runtime.unit_of_work import UnitOfWork


async def test_postgresql_sessions_run_without_jit(postgres_cluster: PostgresCluster) -> None:
    # JIT compiling a short query whose estimated cost crossed jit_above_cost took 5-15 ms.
    database = Database(postgres_cluster.create_database())
    try:
        async with database.session() as session:
            assert await session.scalar(sa.text("SHOW jit")) == "off"
    finally:
        await database.dispose()


async def test_bursts_beyond_the_pool_wait_for_its_connections_instead_of_opening_more(
    postgres_cluster: PostgresCluster,
) -> None:
    database = Database(postgres_cluster.create_database(), pool_size=2)

    async def backend_in_use() -> int:
        async with database.session() as session:
            pid = await session.scalar(sa.text("SELECT pg_backend_pid()"))
            await asyncio.sleep(0.05)  # held, as a unit of work holds it
        assert isinstance(pid, int)
        return pid

    try:
        backends: set[int] = set()
        for _burst in range(2):
            backends |= set(await asyncio.gather(*(backend_in_use() for _ in range(10))))
    finally:
        await database.dispose()
    # Overflow connections would add backends in each burst and close them after it.
    assert len(backends) == 2


async def test_no_pooled_connection_free_in_time_is_the_database_unavailable_now(
    postgres_cluster: PostgresCluster,
) -> None:
    database = Database(postgres_cluster.create_database(), pool_size=1, pool_timeout_seconds=0.2)
    try:
        async with database.session() as holding:
            await holding.execute(sa.text("SELECT 1"))
            with pytest.raises(PoolTimeout) as raised:
                async with database.session() as waiting:
                    await waiting.execute(sa.text("SELECT 1"))
    finally:
        await database.dispose()
    assert db.is_disconnect(raised.value)
    assert status_for(raised.value, "trace").code == code_pb2.UNAVAILABLE


async def test_callers_that_gave_up_waiting_leave_the_connection_to_the_next_in_line(
    postgres_cluster: PostgresCluster,
) -> None:
    database = Database(postgres_cluster.create_database(), pool_size=1, pool_timeout_seconds=0.3)

    async def select_one() -> object:
        async with database.session() as session:
            return await session.scalar(sa.text("SELECT 1"))

    try:
        async with database.session() as holding:
            await holding.execute(sa.text("SELECT 1"))
            timed_out = asyncio.create_task(select_one())
            cancelled = asyncio.create_task(select_one())
            await asyncio.sleep(0.05)
            cancelled.cancel()
            with pytest.raises(PoolTimeout):
                await timed_out
            next_in_line = asyncio.create_task(select_one())
            await asyncio.sleep(0.05)
        # Neither the timed-out caller nor the cancelled one took the connection with it.
        assert await next_in_line == 1
        assert cancelled.cancelled()
        assert await asyncio.wait_for(select_one(), 1.0) == 1
    finally:
        await database.dispose()


async def test_a_caller_cancelled_as_its_connection_arrives_is_cancelled_and_passes_it_on() -> None:
    # The turn and the cancellation in the same step of the loop: the caller must still end
    # (a service stopping waits for its tasks), and the connection go to the next in line.
    queue = db._InTurnQueue(maxsize=1)
    first = asyncio.create_task(greenlet_spawn(queue.get, True, 5.0))
    second = asyncio.create_task(greenlet_spawn(queue.get, True, 5.0))
    await asyncio.sleep(0.01)  # both waiting, in this order

    queue.put_nowait("connection")
    first.cancel()

    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "connection"


async def _backend_pid(database: Database) -> int:
    async with database.session() as session:
        pid = await session.scalar(sa.text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


@pytest.fixture
async def one_connection(postgres_cluster: PostgresCluster) -> AsyncIterator[Database]:
    """A database used one call at a time: its pool lends the same connection while it lives."""
    database = Database(postgres_cluster.create_database(), pool_size=1)
    try:
        yield database
    finally:
        await database.dispose()


async def test_a_pooled_connection_the_database_closed_is_replaced_when_next_lent(
    one_connection: Database,
) -> None:
    first = await _backend_pid(one_connection)
    # The backend goes as in a restart or a failover, while the connection idles in the pool.
    other = Database(one_connection.url)
    try:
        async with other.session() as session:
            await session.execute(
                sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": first}
            )
    finally:
        await other.dispose()
    await asyncio.sleep(0.1)  # the service's event loop sees the socket close meanwhile

    assert await _backend_pid(one_connection) != first


async def test_a_connection_in_use_is_lent_again_without_a_ping(
    one_connection: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _count_pings(monkeypatch)
    first = await _backend_pid(one_connection)

    again = [await _backend_pid(one_connection) for _ in range(3)]

    assert again == [first] * 3
    assert pings == []


async def test_a_connection_idle_past_the_threshold_is_pinged_and_kept_if_it_answers(
    one_connection: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend_pid(one_connection)
    pings = _count_pings(monkeypatch)
    monkeypatch.setattr(db, "IDLE_BEFORE_PING_SECONDS", 0.0)

    assert await _backend_pid(one_connection) == first
    assert len(pings) == 1


async def test_an_idle_connection_that_does_not_answer_its_ping_is_replaced(
    one_connection: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend_pid(one_connection)
    monkeypatch.setattr(db, "IDLE_BEFORE_PING_SECONDS", 0.0)
    pings = _count_pings(monkeypatch, answers=False)

    second = await _backend_pid(one_connection)

    assert second != first
    assert len(pings) == 1  # the new connection was not idle: lent without a ping


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
async def test_units_going_again_at_once_do_not_take_the_connection_ahead_of_those_waiting(
    dialect: str, tmp_path: Path, postgres_cluster: PostgresCluster
) -> None:
    # A consumer applies event after event, each in a unit of work; a read (GetProfile) that
    # asks for the connection meanwhile gets the next turn. SQLAlchemy's pool let the consumer
    # take it back each time first, and on SQLite the busy handler let waiters retry in any
    # order: reads waited up to seconds.
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"
        if dialect == "sqlite"
        else postgres_cluster.create_database()
    )
    database = Database(url, pool_size=1)
    turns: list[str] = []

    async def unit_of_work(name: str) -> None:
        async with UnitOfWork(database) as unit:
            await unit.session.execute(sa.text("SELECT 1"))
            turns.append(name)
            await unit.commit()

    async def consumer(name: str) -> None:
        for _ in range(3):
            await unit_of_work(name)

    async def arrive(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        await asyncio.sleep(0.05)  # asking before whatever arrives next
        return task

    try:
        async with UnitOfWork(database) as holding:
            await holding.session.execute(sa.text("SELECT 1"))
            tasks = [await arrive(consumer(f"consumer {n}")) for n in (1, 2, 3)]
            tasks.append(await arrive(unit_of_work("read")))
            await holding.commit()
        await asyncio.gather(*tasks)
    finally:
        await database.dispose()

    each_in_turn = ["consumer 1", "consumer 2", "consumer 3"]
    assert turns == [*each_in_turn, "read", *each_in_turn, *each_in_turn]


def _count_pings(monkeypatch: pytest.MonkeyPatch, *, answers: bool = True) -> list[object]:
    """Records each ping of a pooled connection; one that does not answer fails as a dead
    connection does (the driver's error, as SQLAlchemy's adapter raises it)."""
    pings: list[object] = []
    ping: Callable[[AsyncAdapt_asyncpg_connection], None] = AsyncAdapt_asyncpg_connection.ping

    def counted(connection: AsyncAdapt_asyncpg_connection) -> None:
        pings.append(connection)
        if not answers:
            raise connection.dbapi.OperationalError("the connection is gone")
        ping(connection)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counted)
    return pings
