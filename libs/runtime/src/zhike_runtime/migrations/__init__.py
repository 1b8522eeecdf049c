"""Versioned schema migrations with Alembic.

Two script directories apply to each service's database: the runtime's own (outbox and inbox
tables, version table `zhike_runtime_version`) and the service's (its `storage/migrations`,
version table `alembic_version`). Each script directory's env.py calls `run_in_alembic_env`.
`apply_migrations` brings both to their newest revision, the runtime's first;
`downgrade_migrations` takes them down to named revisions (`migrate --down-to`), the service's
first. Either runs every pending revision of both in one transaction: a failure anywhere leaves
the database as it was.

What that one transaction means for live traffic (PostgreSQL): every lock a statement takes is
held until the whole run commits, not until that statement ends. An ADD COLUMN's ACCESS
EXCLUSIVE lock (no reads, no writes of the table) lasts through every later statement of the
run, a CREATE INDEX's SHARE lock (no writes) likewise; requests on those tables queue for the
run's whole length. `lock_timeout` bounds only the wait for a lock (so a migration that cannot
get one gives up rather than make every later query queue behind its request), and
`statement_timeout` each statement's run time; neither bounds how long the locks are held.
docs/operations.md ("Upgrade") lists the revisions that take long on a large store.

The migrations' own PostgreSQL connection has no client-side statement timeout (the services'
connections give up after 30 s): a migration's statement may run up to `statement_timeout`, and
a replica waits for another's whole run on the advisory lock.

On SQLite a run takes the file's write lock (BEGIN IMMEDIATE) for its length, with foreign keys
off, as SQLite's procedure for schema changes says: Alembic's batch mode rebuilds a table
(copy, DROP TABLE, rename), and with foreign keys on the DROP fails while rows point at the
table. `PRAGMA foreign_key_check` runs before the commit: a run that would leave a row pointing
at nothing is refused and rolled back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database, sqlstate

RUNTIME_SCRIPTS = Path(__file__).resolve().parent
RUNTIME_VERSION_TABLE = "zhike_runtime_version"
SERVICE_VERSION_TABLE = "alembic_version"
# Any constant works; it only has to be the same for every replica of every service.
_PG_MIGRATION_LOCK = 7_221_044
FIELD_KEYS = "zhike_field_keys"
# PostgreSQL limits of a migration's transaction (ZHIKE_MIGRATION_*_TIMEOUT_SECONDS). A DDL
# statement waiting for its lock makes every later query on the table queue behind it: a short
# lock_timeout gives up instead of stalling live traffic. statement_timeout bounds how long one
# statement runs; the locks it took are held on until the whole run commits (above).
DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 300.0
_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"

T = TypeVar("T")


class MigrationError(RuntimeError):
    """A migration stopped and its transaction rolled back whole; the message says why and what
    to do (it is what `migrate` prints)."""


class MigrationTimeout(MigrationError):
    """A migration gave up on a timeout; its transaction rolled back whole."""


class MigrationRefused(MigrationError):
    """A migration refused to go on: it would leave a row pointing at nothing (SQLite), a
    revision on the way down cannot be undone, or the revision asked for is not on the way."""


def run_in_alembic_env() -> None:
    """Body of every env.py: run the migrations on the connection `apply_migrations` (or
    `downgrade_migrations`) passed in."""
    config = context.config
    connection: Connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        version_table=config.attributes["version_table"],
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def _config(
    connection: Connection, scripts: Path, version_table: str, keys: FieldKeys | None
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    config.attributes[FIELD_KEYS] = keys
    return config


def migration_field_keys() -> FieldKeys | None:
    """Inside a migration: the field keys `apply_migrations` was given (None if none were)."""
    keys: FieldKeys | None = context.config.attributes.get(FIELD_KEYS)
    return keys


def _milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _timeout_error(
    error: DBAPIError, lock_timeout_seconds: float, statement_timeout_seconds: float
) -> MigrationTimeout | None:
    code = sqlstate(error)
    if code == _LOCK_NOT_AVAILABLE:
        return MigrationTimeout(
            f"migration stopped: a lock it needs was not granted within {lock_timeout_seconds:g} s "
            "(ZHIKE_MIGRATION_LOCK_TIMEOUT_SECONDS); another session holds a conflicting lock "
            "(see pg_locks and pg_stat_activity). Nothing was changed: run it again when that "
            "session has finished, or at a quieter time"
        )
    if code == _QUERY_CANCELED:
        return MigrationTimeout(
            f"migration stopped: a statement ran longer than {statement_timeout_seconds:g} s "
            "(ZHIKE_MIGRATION_STATEMENT_TIMEOUT_SECONDS). Nothing was changed: raise the limit "
            "for this migration or run it at a quieter time"
        )
    return None


async def _run(
    database: Database,
    work: Callable[[Connection], T],
    lock_timeout_seconds: float,
    statement_timeout_seconds: float,
) -> T:
    """Runs `work` (Alembic's commands) in one transaction, as the module docstring says."""
    try:
        if database.is_postgres:
            return await _run_on_postgres(
                database, work, lock_timeout_seconds, statement_timeout_seconds
            )
        return await _run_on_sqlite(database, work)
    except DBAPIError as error:
        timeout = _timeout_error(error, lock_timeout_seconds, statement_timeout_seconds)
        if timeout is None:
            raise
        raise timeout from error
    except TimeoutError as error:
        # No statement of the run has a client-side limit: this is connecting, before anything.
        raise MigrationTimeout(
            "migration stopped: the database did not answer in time. Nothing was changed: "
            "check that it is reachable and run it again"
        ) from error


async def _run_on_postgres(
    database: Database,
    work: Callable[[Connection], T],
    lock_timeout_seconds: float,
    statement_timeout_seconds: float,
) -> T:
    # A connection of its own, like the service's but without the client-side cap on each
    # statement (command_timeout): the server's timeouts below bound every statement, and the
    # wait for another replica's run is meant to last as long as that run.
    migrator = Database(database.url, 1, tls=database.tls, command_timeout_seconds=None)
    try:
        async with migrator.engine.begin() as connection:
            # Held until this transaction ends, so concurrent starters migrate one after
            # another. Taken before the timeouts are set: waiting here queues behind another
            # migrator only, never in front of live traffic.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
            # is_local=true (SET LOCAL): the limits end with this transaction.
            await connection.execute(
                text(
                    "SELECT set_config('lock_timeout', :lock, true),"
                    " set_config('statement_timeout', :statement, true)"
                ),
                {
                    "lock": _milliseconds(lock_timeout_seconds),
                    "statement": _milliseconds(statement_timeout_seconds),
                },
            )
            return await connection.run_sync(work)
    finally:
        await migrator.dispose()


async def _set_foreign_keys(connection: AsyncConnection, enforced: bool) -> None:
    """SQLite's foreign key enforcement on this connection. Outside a transaction only: within
    one SQLite ignores the PRAGMA without a word, hence the check."""
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    async with driver.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}"):
        pass
    async with driver.execute("PRAGMA foreign_keys") as cursor:
        row = await cursor.fetchone()
    if row is None or bool(row[0]) != enforced:
        raise RuntimeError("SQLite did not change foreign key enforcement (in a transaction?)")


def _check_foreign_keys(connection: Connection) -> None:
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if not rows:
        return
    # (table, rowid, parent table, constraint index): which tables, never the rows' values.
    dangling = Counter((str(row[0]), str(row[2])) for row in rows)
    where = ", ".join(
        f"{count} in {table} pointing at {parent}"
        for (table, parent), count in sorted(dangling.items())
    )
    raise MigrationRefused(
        f"migration stopped: it would leave rows whose foreign key points at no row ({where}). "
        "Nothing was changed: the migration must keep or remove the rows that point there"
    )


async def _run_on_sqlite(database: Database, work: Callable[[Connection], T]) -> T:
    async with database.engine.connect() as connection:
        await _set_foreign_keys(connection, enforced=False)
        try:
            async with connection.begin():
                result = await connection.run_sync(work)
                await connection.run_sync(_check_foreign_keys)
            return result
        finally:
            # The pool lends this connection on to the service: never without its checks.
            try:
                await _set_foreign_keys(connection, enforced=True)
            except BaseException:
                await connection.invalidate()
                raise


async def apply_migrations(
    database: Database,
    service_scripts: Path | None,
    field_keys: FieldKeys | None = None,
    *,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    statement_timeout_seconds: float = DEFAULT_STATEMENT_TIMEOUT_SECONDS,
) -> None:
    """Brings the database to the newest schema; safe to run from several replicas at once.

    `field_keys` reach the migrations (`migration_field_keys()`) that seal stored personal data;
    such a migration refuses to run without them only where there is data to seal.

    On PostgreSQL every statement runs under the lock and statement timeouts given; past either
    the whole migration rolls back and `MigrationTimeout` says which limit stopped it. Locks
    are held until the whole run commits (module docstring)."""

    def upgrade(connection: Connection) -> None:
        # The runtime's first: the service's revisions may build on its tables.
        command.upgrade(
            _config(connection, RUNTIME_SCRIPTS, RUNTIME_VERSION_TABLE, field_keys), "head"
        )
        if service_scripts is not None:
            command.upgrade(
                _config(connection, service_scripts, SERVICE_VERSION_TABLE, field_keys), "head"
            )

    await _run(database, upgrade, lock_timeout_seconds, statement_timeout_seconds)


def _named(targets: Sequence[str], directories: Sequence[tuple[Path, str]]) -> dict[Path, str]:
    """Which script directory each target revision belongs to (at most one per directory)."""
    named: dict[Path, str] = {}
    for target in targets:
        for scripts, _table in directories:
            try:
                found = ScriptDirectory(str(scripts)).get_revision(target)
            except CommandError:
                continue
            if found is not None and found.revision == target:
                break
        else:
            raise MigrationRefused(
                f"migration stopped: no revision {target} among the runtime's or the service's "
                "migrations. Nothing was changed"
            )
        if scripts in named:
            raise MigrationRefused(
                f"migration stopped: {named[scripts]} and {target} are two revisions of one "
                "script directory; name one. Nothing was changed"
            )
        named[scripts] = target
    return named


def _on_the_way_down(script: ScriptDirectory, current: str | None, target: str) -> list[Script]:
    """The revisions from `current` down to `target`, newest first, `target` left out."""
    path: list[Script] = []
    name = current
    while name is not None and name != target:
        try:
            revision = script.get_revision(name)
        except CommandError:
            revision = None
        if revision is None:
            raise MigrationRefused(
                f"migration stopped: the database is at {name}, which these migrations do not "
                "know (a newer release's?): take it down with that release's image. "
                "Nothing was changed"
            )
        path.append(revision)
        below = revision.down_revision
        if below is not None and not isinstance(below, str):
            raise MigrationRefused(
                f"migration stopped: {name} merges branches, which --down-to does not go "
                "through. Nothing was changed"
            )
        name = below
    if name is None:
        raise MigrationRefused(
            f"migration stopped: {target} is not applied (the database is at "
            f"{current or 'no revision'}), so there is nothing to undo down to it. "
            "Nothing was changed"
        )
    return path


def _downgrade(
    connection: Connection,
    scripts: Path,
    version_table: str,
    target: str,
    keys: FieldKeys | None,
) -> list[str]:
    config = _config(connection, scripts, version_table, keys)
    script = ScriptDirectory.from_config(config)
    current = MigrationContext.configure(
        connection, opts={"version_table": version_table}
    ).get_current_revision()
    undone: list[str] = []
    for revision in _on_the_way_down(script, current, target):
        # One revision at a time, so that a refusal names the revision that refused.
        below = revision.down_revision
        try:
            command.downgrade(config, below if isinstance(below, str) else "base")
        except DBAPIError:
            raise
        except Exception as error:
            raise MigrationRefused(
                f"migration stopped: {revision.revision} cannot be undone ({error}). Nothing was "
                "changed"
            ) from error
        undone.append(revision.revision)
    return undone


async def downgrade_migrations(
    database: Database,
    service_scripts: Path | None,
    targets: Sequence[str],
    field_keys: FieldKeys | None = None,
    *,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    statement_timeout_seconds: float = DEFAULT_STATEMENT_TIMEOUT_SECONDS,
) -> list[str]:
    """Takes the database down to `targets`: revisions of the service's migrations, of the
    runtime's, or one of each. Each script directory named goes down until its revision is the
    newest applied; the others stay as they are. Returns the revisions undone, in order.

    The service's go down before the runtime's (the reverse of `apply_migrations`: the
    service's revisions may build on the runtime's tables), all in one transaction under the
    same limits and advisory lock as `apply_migrations`. A revision on the way that cannot be
    undone (its downgrade refuses, as identity_0003's does) stops the run with
    `MigrationRefused` and nothing changes; so does a target that is not applied."""
    directories = [(RUNTIME_SCRIPTS, RUNTIME_VERSION_TABLE)]
    if service_scripts is not None:
        directories.insert(0, (service_scripts, SERVICE_VERSION_TABLE))
    named = _named(targets, directories)

    def downgrade(connection: Connection) -> list[str]:
        undone: list[str] = []
        for scripts, table in directories:
            if scripts in named:
                undone += _downgrade(connection, scripts, table, named[scripts], field_keys)
        return undone

    return await _run(database, downgrade, lock_timeout_seconds, statement_timeout_seconds)
