"""The runtime's unit of work: state and events commit together, locks serialise writers, and a
lost race is a value-free ConcurrentUpdate. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from zhike.testing.v1 import events_pb2
from zhike_runtime.db import Database
from zhike_runtime.errors import ConcurrentUpdate
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.processes import PostgresCluster
from zhike_runtime.unit_of_work import UnitOfWork, lock_id

from .conftest import ping

PHONE = "13671829305"

tables = sa.MetaData()
account = sa.Table(
    "account",
    tables,
    sa.Column("account_id", sa.String(32), primary_key=True),
    sa.Column("phone", sa.String(32), nullable=True, unique=True),
    sa.Column("balance", sa.Integer, nullable=False),
)


class AccountUnit(UnitOfWork):
    """A service's unit as services write them: the runtime's, plus a repository."""

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.accounts = Accounts(self)
        return self


class Accounts:
    def __init__(self, unit: UnitOfWork) -> None:
        self._session = unit.session

    async def open(self, account_id: str, balance: int = 0, phone: str | None = None) -> None:
        await self._session.execute(
            sa.insert(account).values(account_id=account_id, balance=balance, phone=phone)
        )

    async def balance(self, account_id: str) -> int:
        value = await self._session.scalar(
            sa.select(account.c.balance).where(account.c.account_id == account_id)
        )
        assert value is not None
        return int(value)

    async def set_balance(self, account_id: str, balance: int) -> None:
        await self._session.execute(
            sa.update(account).where(account.c.account_id == account_id).values(balance=balance)
        )


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await apply_migrations(database, None)
    async with database.engine.begin() as connection:
        await connection.run_sync(tables.create_all)
    yield database
    await database.dispose()


async def outbox_rows(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(outbox_event)) or 0)


async def accounts(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(account)) or 0)


async def test_state_and_staged_events_commit_together_and_wake_the_relay_once(
    database: Database,
) -> None:
    wakes: list[int] = []
    async with AccountUnit(database, on_commit=lambda: wakes.append(1)) as unit:
        await unit.accounts.open("A-1", 100)
        unit.stage(ping("opened-1"), ping("opened-2"))
        await unit.commit()
    assert wakes == [1]
    assert await accounts(database) == 1
    async with database.session() as session:
        rows = (await session.execute(sa.select(outbox_event).order_by("position"))).all()
    assert [events_pb2.Ping.FromString(r.payload).key for r in rows] == ["opened-1", "opened-2"]


async def test_a_commit_without_events_does_not_wake_the_relay(database: Database) -> None:
    wakes: list[int] = []
    async with AccountUnit(database, on_commit=lambda: wakes.append(1)) as unit:
        await unit.accounts.open("A-1")
        await unit.commit()
    assert wakes == []
    assert await accounts(database) == 1


async def test_leaving_without_commit_keeps_neither_state_nor_events(database: Database) -> None:
    wakes: list[int] = []

    class Refused(Exception):
        pass

    async def refused_use_case() -> None:
        async with AccountUnit(database, on_commit=lambda: wakes.append(1)) as unit:
            await unit.accounts.open("A-1")
            unit.stage(ping("never"))
            raise Refused

    with pytest.raises(Refused):
        await refused_use_case()
    async with AccountUnit(database) as unit:
        await unit.accounts.open("A-2")
        # Not committed: the unit is left as if the use case had returned early.
    assert await accounts(database) == 0
    assert await outbox_rows(database) == 0
    assert wakes == []


async def test_a_unique_key_race_is_a_concurrent_update_without_the_value(
    database: Database,
) -> None:
    async with AccountUnit(database) as unit:
        await unit.accounts.open("A-1", phone=PHONE)
        await unit.commit()

    async def open_with_the_same_phone() -> None:
        async with AccountUnit(database) as unit:
            await unit.accounts.open("A-2", phone=PHONE)
            unit.stage(ping("lost"))
            await unit.commit()

    with pytest.raises(ConcurrentUpdate) as raised:
        await open_with_the_same_phone()
    assert isinstance(raised.value.__cause__, IntegrityError)
    assert PHONE not in str(raised.value)
    assert await accounts(database) == 1
    assert await outbox_rows(database) == 0


async def test_a_not_null_violation_leaves_as_the_database_error_not_a_conflict_to_retry(
    database: Database,
) -> None:
    # The same statement fails the same way on every try: a caller told "concurrent update"
    # would retry it until it gave up, and the defect would be reported as contention.
    async def open_without_a_balance() -> None:
        async with AccountUnit(database) as unit:
            await unit.session.execute(
                sa.insert(account).values(account_id="A-1", balance=None, phone=PHONE)
            )
            unit.stage(ping("lost"))
            await unit.commit()

    with pytest.raises(IntegrityError):
        await open_without_a_balance()
    assert await accounts(database) == 0
    assert await outbox_rows(database) == 0


async def test_writers_holding_the_same_lock_lose_no_update(database: Database) -> None:
    async with AccountUnit(database) as unit:
        await unit.accounts.open("A-1", 0)
        await unit.commit()

    async def deposit() -> None:
        async with AccountUnit(database) as unit:
            await unit.lock(["account:A-1"])
            balance = await unit.accounts.balance("A-1")
            await asyncio.sleep(0.01)  # the window a lost update needs
            await unit.accounts.set_balance("A-1", balance + 10)
            await unit.commit()

    await asyncio.gather(*(deposit() for _ in range(10)))
    async with AccountUnit(database) as unit:
        assert await unit.accounts.balance("A-1") == 100


def lock_statements(database: Database) -> list[list[int]]:
    """The ids each exclusive advisory-lock statement asks for, from now on."""
    asked: list[list[int]] = []

    def record(
        conn: object, cursor: object, statement: str, parameters: Any, *args: object
    ) -> None:
        if "pg_advisory_xact_lock(" in statement:
            asked.append(list(parameters[0]))

    sa.event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    return asked


async def free_of(observer: UnitOfWork, names: list[str]) -> set[str]:
    """Which of `names` no other transaction holds, seen from `observer` (which lets them go)."""
    free = await observer.try_lock(names)
    await observer.commit()
    return free


async def test_a_lock_name_already_held_is_not_asked_for_again_and_commit_releases_them(
    postgres_cluster: PostgresCluster,
) -> None:
    database = Database(postgres_cluster.create_database())
    try:
        await apply_migrations(database, None)
        asked = lock_statements(database)
        async with AccountUnit(database) as unit, AccountUnit(database) as observer:
            await unit.lock(["a", "b"])
            await unit.lock(["b", "a", "c"])
            assert await free_of(observer, ["a", "b", "c", "d"]) == {"d"}
            await unit.commit()
            assert await free_of(observer, ["a", "b", "c"]) == {"a", "b", "c"}
            # The unit's next transaction takes a name it held before the commit anew.
            await unit.lock(["a"])
            assert await free_of(observer, ["a", "b"]) == {"b"}
            await unit.commit()
        assert asked == [sorted([lock_id("a"), lock_id("b")]), [lock_id("c")], [lock_id("a")]]
    finally:
        await database.dispose()


async def test_on_sqlite_a_lock_issues_no_statement(tmp_path: Path) -> None:
    # SQLite serialises whole transactions (BEGIN IMMEDIATE): there is nothing to lock.
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}")
    try:
        await apply_migrations(database, None)
        issued: list[str] = []
        sa.event.listen(
            database.engine.sync_engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *args: issued.append(statement),
        )
        async with AccountUnit(database) as unit:
            await unit.lock(["a", "b"])
            await unit.session.execute(sa.text("SELECT 1"))
            await unit.commit()
        assert issued == ["BEGIN IMMEDIATE", "SELECT 1"]
    finally:
        await database.dispose()


async def test_try_lock_takes_the_free_names_leaves_the_held_ones_and_never_waits(
    postgres_cluster: PostgresCluster,
) -> None:
    database = Database(postgres_cluster.create_database())
    try:
        await apply_migrations(database, None)
        async with AccountUnit(database) as holder, AccountUnit(database) as trier:
            await holder.lock(["a"])
            await trier.lock(["c"])
            # "a" is the holder's: left without waiting (a wait would hang this test, the
            # holder commits only below); "b" is free; "c" the trier holds already.
            taken = await asyncio.wait_for(trier.try_lock(["a", "b", "c"]), timeout=5)
            assert taken == {"b", "c"}
            await holder.commit()
            assert await trier.try_lock(["a"]) == {"a"}
            await trier.commit()
    finally:
        await database.dispose()


async def test_shared_holders_hold_a_name_together_and_an_exclusive_one_waits_for_them_all(
    postgres_cluster: PostgresCluster,
) -> None:
    database = Database(postgres_cluster.create_database())
    try:
        await apply_migrations(database, None)
        async with (
            AccountUnit(database) as reader,
            AccountUnit(database) as other_reader,
            AccountUnit(database) as writer,
        ):
            await reader.lock_shared(["catalogue"])
            # Another shared holder is not kept waiting (a wait would hang: nothing commits).
            await asyncio.wait_for(other_reader.lock_shared(["catalogue"]), timeout=5)
            exclusive = asyncio.create_task(writer.lock(["catalogue"]))
            await reader.commit()
            await asyncio.sleep(0.2)
            assert not exclusive.done()  # the other shared holder still has it
            await other_reader.commit()
            await asyncio.wait_for(exclusive, timeout=5)
            # Now a shared holder waits for the exclusive one.
            shared = asyncio.create_task(reader.lock_shared(["catalogue"]))
            await asyncio.sleep(0.2)
            assert not shared.done()
            await writer.commit()
            await asyncio.wait_for(shared, timeout=5)
            await reader.commit()
    finally:
        await database.dispose()


async def test_on_sqlite_try_lock_takes_every_name(tmp_path: Path) -> None:
    # SQLite serialises whole transactions (BEGIN IMMEDIATE): nothing inside one is contended.
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}")
    try:
        await apply_migrations(database, None)
        async with AccountUnit(database) as unit:
            assert await unit.try_lock(["a", "b"]) == {"a", "b"}
    finally:
        await database.dispose()


def test_lock_ids_are_the_ones_every_deployed_version_computes() -> None:
    # Replicas of an old and a new version run side by side during a rollout: the same name
    # must lock the same id in both (identity's ids before the lock moved to the runtime).
    assert lock_id("record:core_deposits:D-1") == -6076570153945352843
    assert lock_id("") == -1970711489451281740


async def test_a_serialization_failure_is_a_concurrent_update(
    postgres_cluster: PostgresCluster,
) -> None:
    database = Database(postgres_cluster.create_database())
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(tables.create_all)
        await apply_migrations(database, None)
        async with AccountUnit(database) as unit:
            await unit.accounts.open("A-1", 0)
            await unit.commit()
        repeatable_read = sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

        async def two_writers_on_one_snapshot() -> None:
            async with AccountUnit(database) as first, AccountUnit(database) as second:
                await first.session.execute(repeatable_read)
                await second.session.execute(repeatable_read)
                await first.accounts.balance("A-1")
                await second.accounts.balance("A-1")
                await first.accounts.set_balance("A-1", 1)
                await first.commit()
                # Its snapshot predates the first one's commit: PostgreSQL refuses (40001).
                await second.accounts.set_balance("A-1", 2)

        with pytest.raises(ConcurrentUpdate) as raised:
            await two_writers_on_one_snapshot()
        assert "40001" in str(raised.value)
        async with AccountUnit(database) as unit:
            assert await unit.accounts.balance("A-1") == 1
    finally:
        await database.dispose()
