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

from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database

RUNTIME_SCRIPTS = Path(__file__).resolve().parent
RUNTIME_VERSION_TABLE = "zhike_runtime_version"
SERVICE_VERSION_TABLE = "alembic_version"
# Any constant works; it only has to be the same for every replica of every service.
_PG_MIGRATION_LOCK = 7_221_044
FIELD_KEYS = "zhike_field_keys"


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


async def apply_migrations(
    database: Database, service_scripts: Path | None, field_keys: FieldKeys | None = None
) -> None:
    """Brings the database to the newest schema; safe to run from several replicas at once.

    `field_keys` reach the migrations (`migration_field_keys()`) that seal stored personal data;
    such a migration refuses to run without them only where there is data to seal."""
    async with database.engine.begin() as connection:
        if database.is_postgres:
            # Held until this transaction ends, so concurrent starters migrate one after another.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        await connection.run_sync(_upgrade, RUNTIME_SCRIPTS, RUNTIME_VERSION_TABLE, field_keys)
        if service_scripts is not None:
            await connection.run_sync(_upgrade, service_scripts, SERVICE_VERSION_TABLE, field_keys)
