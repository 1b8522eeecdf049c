from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from zhike_runtime.db import Database
from zhike_runtime.migrations import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    DEFAULT_STATEMENT_TIMEOUT_SECONDS,
    RUNTIME_VERSION_TABLE,
    SERVICE_VERSION_TABLE,
    MigrationTimeout,
    apply_migrations,
)
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.processes import PostgresCluster
from zhike_runtime.testing.services import TEST_SETTINGS

from .scratch_migrations import scratch_scripts


async def table_names(database: Database) -> set[str]:
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    return set(names)


async def test_migrations_create_the_outbox_inbox_and_audit_tables_and_are_idempotent(
    database_url: str,
) -> None:
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
        assert [v[0] for v in versions] == ["runtime_0003"]
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


# --- DDL does not wait long for its locks in front of live traffic (issue 10, defect 5) ---
# A migration's ALTER TABLE waits for an ACCESS EXCLUSIVE lock; while it waits, every later
# query on that table queues behind it. The migration session's lock_timeout bounds that wait
# and its statement_timeout each statement's run time. What a statement locked stays locked
# until the whole run commits (test_migration_locks.py).

WIDGET_V1 = """
revision = "widget_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE widget (id integer PRIMARY KEY)")
    op.execute(
        "CREATE TABLE migration_session AS SELECT current_setting('lock_timeout') AS lock_timeout,"
        " current_setting('statement_timeout') AS statement_timeout"
    )
"""

WIDGET_V2 = """
revision = "widget_0002"
down_revision = "widget_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE widget ADD COLUMN colour text")
"""

SLOW_V2 = """
revision = "widget_0002"
down_revision = "widget_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT pg_sleep(5)")
"""


async def _service_version(database: Database) -> str:
    async with database.engine.connect() as connection:
        version = await connection.scalar(
            sa.text(f"SELECT version_num FROM {SERVICE_VERSION_TABLE}")
        )
    return str(version)


async def test_the_migration_session_runs_with_the_lock_and_statement_timeouts(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    database = Database(postgres_cluster.create_database())
    try:
        await apply_migrations(
            database,
            scratch_scripts(tmp_path / "scripts", WIDGET_V1),
            lock_timeout_seconds=1.5,
            statement_timeout_seconds=45,
        )
        async with database.engine.connect() as connection:
            seen = (await connection.execute(sa.text("SELECT * FROM migration_session"))).one()
            assert tuple(seen) == ("1500ms", "45s")
            # SET LOCAL: the limits end with the migration's transaction, so a pooled
            # connection that later serves requests does not carry them.
            after = await connection.scalar(sa.text("SELECT current_setting('lock_timeout')"))
            assert after == "0"
    finally:
        await database.dispose()


async def test_a_migration_blocked_by_live_traffic_fails_fast_and_changes_nothing(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    database = Database(postgres_cluster.create_database())
    traffic = Database(database.url)
    scripts = tmp_path / "scripts"
    try:
        await apply_migrations(database, scratch_scripts(scripts, WIDGET_V1))
        scratch_scripts(scripts, WIDGET_V1, WIDGET_V2)
        async with traffic.engine.connect() as reader:
            # A live transaction that read the table holds ACCESS SHARE until it ends.
            await reader.execute(sa.text("SELECT count(*) FROM widget"))
            with pytest.raises(MigrationTimeout) as stopped:
                await apply_migrations(database, scripts, lock_timeout_seconds=0.5)
            message = str(stopped.value)
            assert "lock" in message
            assert "ZHIKE_MIGRATION_LOCK_TIMEOUT_SECONDS" in message
            assert "Nothing was changed" in message
            await reader.rollback()
        assert await _service_version(database) == "widget_0001"
        await apply_migrations(database, scripts)  # traffic gone: it goes through
        assert await _service_version(database) == "widget_0002"
    finally:
        await traffic.dispose()
        await database.dispose()


async def test_a_migration_statement_running_past_the_statement_timeout_is_stopped(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    database = Database(postgres_cluster.create_database())
    try:
        with pytest.raises(MigrationTimeout) as stopped:
            await apply_migrations(
                database,
                scratch_scripts(tmp_path / "scripts", WIDGET_V1, SLOW_V2),
                statement_timeout_seconds=0.5,
            )
        assert "ZHIKE_MIGRATION_STATEMENT_TIMEOUT_SECONDS" in str(stopped.value)
        assert "widget" not in await table_names(database)  # one transaction: all rolled back
    finally:
        await database.dispose()


def test_the_timeouts_are_settings() -> None:
    settings = ServiceSettings(
        **TEST_SETTINGS,
        migration_lock_timeout_seconds=2,
        migration_statement_timeout_seconds=90,
    )
    assert settings.migration_lock_timeout_seconds == 2
    assert settings.migration_statement_timeout_seconds == 90
    # The services' defaults are those of apply_migrations' other callers (zhike CLI tools).
    defaults = ServiceSettings(**TEST_SETTINGS)
    assert defaults.migration_lock_timeout_seconds == DEFAULT_LOCK_TIMEOUT_SECONDS
    assert defaults.migration_statement_timeout_seconds == DEFAULT_STATEMENT_TIMEOUT_SECONDS
