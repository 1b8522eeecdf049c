"""The migrations build exactly the tables storage/schema.py describes (SQLite and PostgreSQL),
so the code and a migrated database cannot drift apart."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from zhike_notifications.storage import schema
from zhike_runtime.db import Database
from zhike_runtime.migrations import apply_migrations

from .conftest import MIGRATIONS


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            # The runtime's own tables (outbox, inbox, audit, versions) are not the service's.
            "include_name": lambda name, kind, _parent: (
                kind != "table" or name in schema.metadata.tables
            ),
        },
    )
    return list(compare_metadata(context, schema.metadata))


async def test_the_migrated_database_matches_the_schema(database_url: str) -> None:
    database = Database(database_url)
    try:
        await apply_migrations(database, MIGRATIONS)
        # A second run (another replica starting) finds nothing to do.
        await apply_migrations(database, MIGRATIONS)
        async with database.engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await database.dispose()
    assert differences == []
