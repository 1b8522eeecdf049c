"""What the runbook says of a migration's locks (docs/operations.md, "Install"): all pending
revisions run in one transaction, so a lock one statement takes is held until the whole run
commits, through every later statement; `statement_timeout` bounds each statement's run time,
not how long its locks are held. The upgrade's time on a large table is the time its requests
queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from zhike_runtime.db import Database, sqlstate
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.processes import PostgresCluster

from .scratch_migrations import revision, scratch_scripts

WIDGET = revision(
    1,
    """
op.execute("CREATE TABLE widget (id integer PRIMARY KEY)")
op.execute("CREATE TABLE sprocket (id integer PRIMARY KEY)")
""",
)
WIDGET_COLOUR = revision(2, 'op.execute("ALTER TABLE widget ADD COLUMN colour text")')
# A later revision's long statement, on another table.
SLOW_SPROCKET = revision(
    3,
    """
op.execute("ALTER TABLE sprocket ADD COLUMN size integer")
op.execute("SELECT pg_sleep(2)")
""",
)
_LOCK_NOT_AVAILABLE = "55P03"


async def _until_sleeping(database: Database) -> None:
    """Waits until the migration runs widget_0003's pg_sleep."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(2)%'"
    )
    async with asyncio.timeout(30):
        while True:
            async with database.engine.connect() as connection:
                if await connection.scalar(query):
                    return
            await asyncio.sleep(0.05)


async def test_a_lock_is_held_until_the_whole_run_commits(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    database = Database(postgres_cluster.create_database())
    traffic = Database(database.url)
    scripts = tmp_path / "scripts"
    try:
        await apply_migrations(database, scratch_scripts(scripts, WIDGET))
        scratch_scripts(scripts, WIDGET, WIDGET_COLOUR, SLOW_SPROCKET)
        # Each statement is well within its statement timeout (2 s of 30).
        migration = asyncio.create_task(
            apply_migrations(database, scripts, statement_timeout_seconds=30)
        )
        await _until_sleeping(traffic)  # widget_0002 is done; widget_0003 runs
        async with traffic.engine.connect() as reader:
            await reader.execute(sa.text("SET lock_timeout = '300ms'"))
            with pytest.raises(DBAPIError) as waited:
                await reader.execute(sa.text("SELECT count(*) FROM widget"))
            assert sqlstate(waited.value) == _LOCK_NOT_AVAILABLE
        await migration
        async with traffic.engine.connect() as reader:
            assert await reader.scalar(sa.text("SELECT count(*) FROM widget")) == 0
    finally:
        await traffic.dispose()
        await database.dispose()
