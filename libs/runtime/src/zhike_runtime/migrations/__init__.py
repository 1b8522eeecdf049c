"""Versioned schema migrations with Alembic.

Two script directories apply to each service's database: the runtime's own (outbox and inbox
tables, version table `zhike_runtime_version`) and the service's (its `storage/migrations`,
version table `alembic_version`). Each script directory's env.py calls `run_in_alembic_env`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

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
# lock_timeout gives up instead of stalling live traffic; statement_timeout bounds how long a
# statement may hold the locks it took.
DEFAULT_LOCK_TIMEOUT_SECONDS = 5.0
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 300.0
_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"


class MigrationTimeout(RuntimeError):
    """A migration gave up on a PostgreSQL timeout; its transaction rolled back whole."""


def run_in_alembic_env() -> None:
    """Body of every env.py: run the migrations on the connection `apply_migrations` passed in."""
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


def _upgrade(
    connection: Connection, scripts: Path, version_table: str, keys: FieldKeys | None
) -> None:
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    config.attributes[FIELD_KEYS] = keys
    command.upgrade(config, "head")


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
    the whole migration rolls back and `MigrationTimeout` says which limit stopped it."""
    try:
        async with database.engine.begin() as connection:
            if database.is_postgres:
                # Held until this transaction ends, so concurrent starters migrate one after
                # another. Taken before the timeouts are set: waiting here queues behind
                # another migrator only, never in front of live traffic.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
                # is_local=true (SET LOCAL): the limits end with this transaction and never
                # reach a pooled connection that later serves requests.
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
            await connection.run_sync(_upgrade, RUNTIME_SCRIPTS, RUNTIME_VERSION_TABLE, field_keys)
            if service_scripts is not None:
                await connection.run_sync(
                    _upgrade, service_scripts, SERVICE_VERSION_TABLE, field_keys
                )
    except DBAPIError as error:
        timeout = _timeout_error(error, lock_timeout_seconds, statement_timeout_seconds)
        if timeout is None:
            raise
        raise timeout from error
