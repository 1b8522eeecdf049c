from __future__ import annotations

import asyncio

import sqlalchemy as sa

from zhike_runtime.db import Database
from zhike_runtime.migrations import RUNTIME_VERSION_TABLE, apply_migrations


async def table_names(database: Database) -> set[str]:
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    return set(names)


async def test_migrations_create_the_outbox_inbox_and_audit_tables_and_are_idempotent(database_url: str) -> None:
    database = Database(database_url)
    try:
        await apply_migrations(database, None)
        await apply_migrations(database, None)
        assert {
            "outbox_event",
            "inbox_event",
            "audit_record",
            RUNTIME_VERSION_TABLE,
        } <= await table_names(database)
        async with database.engine.connect() as connection:
            versions = (
                await connection.execute(
                    sa.text(f"SELECT version_num FROM {RUNTIME_VERSION_TABLE}")
                )
            ).all()
        assert [v[0] for v in versions] == ["runtime_0002"]
    finally:
        await database.dispose()


async def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    databases = [Database(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(apply_migrations(d, None) for d in databases))
        async with databases[0].engine.connect() as connection:
            count = await connection.scalar(
                sa.text(f"SELECT count(*) FROM {RUNTIME_VERSION_TABLE}")
            )
        assert count == 1
    finally:
        for database in databases:
            await database.dispose()
