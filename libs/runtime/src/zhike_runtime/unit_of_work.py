"""The unit of work: one transaction over a service's state rows and its outbox rows.

Every service's use cases write through one of these, so the rules live once: state and events
commit together or not at all, the relay hears of new events the moment they are committed,
writers that touch the same things queue on named locks, and a lost race surfaces as
`ConcurrentUpdate` (the gRPC layer answers ABORTED: retry) instead of a raw database error.

The API (stable; services subclass it and add their repositories):

    class SqlProfileUnitOfWork(UnitOfWork):
        async def __aenter__(self) -> Self:
            await super().__aenter__()           # opens the session and begins
            self.profiles = SqlProfileStore(self.session, self.dialect)
            return self

    async with SqlProfileUnitOfWork(database, on_commit=relay.notify) as unit:
        await unit.lock([f"party:{party_id}"])   # held until the transaction ends
        ...                                      # reads and writes through unit.session
        unit.stage(OutgoingEvent(subject, message))
        await unit.commit()                      # state + outbox rows, one commit; wakes the relay

- `UnitOfWork(database, *, on_commit=None)`: `on_commit` is called after a commit that wrote
  outbox rows (a service passes `platform.relay.notify`); nothing is opened until `async with`.
- `session` (`AsyncSession`), `dialect` (`"sqlite"` / `"postgresql"`), `is_postgres`: inside
  `async with` only. Repositories take the session and never commit.
- `stage(*events)`: `OutgoingEvent`s to write to the outbox at `commit()`, in this order.
- `await lock(names)`: named locks held until the transaction ends. On PostgreSQL, transaction
  advisory locks (`pg_advisory_xact_lock`), taken in one statement in ascending id order so two
  units never wait on each other in a cycle; a name already held by this unit is not taken
  twice. On SQLite a no-op: every transaction starts with BEGIN IMMEDIATE (`zhike_runtime.db`),
  which already serialises all writers. Names hash to 64-bit ids; a collision only serialises
  more. Take locks before reading what they protect.
- `await try_lock(names)`: the same locks, but only those free now: returns the names this
  unit holds afterwards and never waits (PostgreSQL's `pg_try_advisory_xact_lock`; on SQLite
  every name). For a batch that would rather leave contended work for later than queue behind
  another replica's transaction. Take the locks you will wait for (`lock`) before any you try:
  a unit that waits while holding tried locks can wait in a cycle (PostgreSQL then breaks it
  with a deadlock error, a `ConcurrentUpdate`).
- `await commit()`: writes the staged events, commits, then calls `on_commit` if there were any.
  Locks are released with the transaction. Leaving `async with` without committing rolls back.
- Leaving `async with` on a unique-key/foreign-key violation (`IntegrityError`), a PostgreSQL
  serialization failure (40001) or a deadlock (40P01) raises `ConcurrentUpdate` with a value-free
  message (`zhike_runtime.redaction`), chained to the database error. Callers may retry the whole
  use case. Other integrity errors (NOT NULL, CHECK) leave as they are: no retry mends them.
- `lock_id(name)` (the id a name locks) and `is_conflict(error)` (the errors mapped above) are
  public for code that takes locks or retries outside a unit, such as migrations or bulk loads.

Inside an event consumer (`zhike_runtime.events.consumer`) the consumer opens the unit, records
the inbox row through it and commits it; handlers stage and write through `context.unit` and
never commit it themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_runtime.db import Database, sqlstate
from zhike_runtime.errors import ConcurrentUpdate
from zhike_runtime.events.outbox import OutgoingEvent, add_to_outbox
from zhike_runtime.redaction import describe_error

# PostgreSQL's SQLSTATEs for "another transaction got there first": retrying may succeed.
_SERIALIZATION_FAILURE = "40001"
_DEADLOCK_DETECTED = "40P01"
# The integrity errors a concurrent writer causes: a key it inserted first, a row it deleted
# under a reference. A NOT NULL or CHECK violation is the same on every try: a defect or a value
# out of range, never a race, so retrying it only hides it.
_RACE_SQLSTATES = frozenset({"23505", "23503", "23P01"})
_RACE_SQLITE_ERRORS = frozenset(
    {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_FOREIGNKEY"}
)

# One statement for any number of locks, sorted by the database so the order is the same for all.
_ADVISORY_LOCKS = sa.text(
    "SELECT pg_advisory_xact_lock(id) FROM unnest(CAST(:ids AS bigint[])) AS t(id) ORDER BY id"
)
_SHARED_ADVISORY_LOCKS = sa.text(
    "SELECT pg_advisory_xact_lock_shared(id) FROM unnest(CAST(:ids AS bigint[])) AS t(id) "
    "ORDER BY id"
)
# The ids of those free now, taken; the others are left to their holders, without waiting.
_TRY_ADVISORY_LOCKS = sa.text(
    "SELECT id FROM unnest(CAST(:ids AS bigint[])) AS t(id) WHERE pg_try_advisory_xact_lock(id)"
)


def lock_id(name: str) -> int:
    """The signed 64-bit advisory lock id of a name. Every replica, and every version of every
    service, must compute the same id for the same name: do not change this function."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def is_conflict(error: BaseException | None) -> bool:
    """True for the database errors that mean a concurrent writer won: worth a retry."""
    if isinstance(error, IntegrityError):
        sqlite_name = getattr(error.orig, "sqlite_errorname", None)
        return sqlstate(error) in _RACE_SQLSTATES or sqlite_name in _RACE_SQLITE_ERRORS
    if isinstance(error, DBAPIError):
        return sqlstate(error) in (_SERIALIZATION_FAILURE, _DEADLOCK_DETECTED)
    return False


class UnitOfWork:
    """One transaction: state and outbox rows commit together or not at all."""

    session: AsyncSession

    def __init__(self, database: Database, *, on_commit: Callable[[], None] | None = None) -> None:
        self.database = database
        self.dialect = database.dialect
        self.is_postgres = database.is_postgres
        self._on_commit = on_commit
        self._staged: list[OutgoingEvent] = []
        self._locked: set[int] = set()

    async def __aenter__(self) -> Self:
        self.session = self.database.session()
        await self.session.begin()
        return self

    def stage(self, *events: OutgoingEvent) -> None:
        """Events to write to the outbox in this transaction (at commit, in this order)."""
        self._staged.extend(events)

    async def lock(self, names: Iterable[str]) -> None:
        """Named locks until the transaction ends (PostgreSQL; SQLite already serialises)."""
        await self._take(_ADVISORY_LOCKS, names)

    async def lock_shared(self, names: Iterable[str]) -> None:
        """Named locks in shared mode until the transaction ends: any number of units hold one
        together, while a unit holding it with `lock` (exclusive) waits for them all, and they
        for it (PostgreSQL; SQLite already serialises). A unit takes a name in one mode only."""
        await self._take(_SHARED_ADVISORY_LOCKS, names)

    async def _take(self, statement: sa.TextClause, names: Iterable[str]) -> None:
        if not self.is_postgres:
            return
        ids = sorted({lock_id(name) for name in names} - self._locked)
        if not ids:
            return
        await self.session.execute(statement, {"ids": ids})
        self._locked.update(ids)

    async def try_lock(self, names: Iterable[str]) -> set[str]:
        """Of `names`, those this unit holds afterwards: the ones it held already and the ones
        that were free; never waits for the others (PostgreSQL; on SQLite all of them)."""
        ids = {name: lock_id(name) for name in names}
        if not self.is_postgres:
            return set(ids)
        wanted = sorted(set(ids.values()) - self._locked)
        if wanted:
            taken = (await self.session.execute(_TRY_ADVISORY_LOCKS, {"ids": wanted})).scalars()
            self._locked.update(taken)
        return {name for name, lock in ids.items() if lock in self._locked}

    async def commit(self) -> None:
        staged = self._staged
        if staged:
            await add_to_outbox(self.session, staged)
        await self.session.commit()
        self._staged = []
        self._locked.clear()  # transaction-scoped: released by the commit
        if staged and self._on_commit is not None:
            self._on_commit()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._staged = []
        self._locked.clear()
        try:
            if self.session.in_transaction():
                await self.session.rollback()
        finally:
            await self.session.close()
        if is_conflict(exc):
            assert exc is not None
            raise ConcurrentUpdate(describe_error(exc)) from exc
