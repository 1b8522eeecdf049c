"""A migration is bounded by its PostgreSQL timeouts, not by the services' client-side cap.

A service's connections give up on a statement after `command_timeout_seconds` (30 s): right
for a request, wrong for a migration, whose CREATE INDEX on a large table may rightly run for
minutes under its `statement_timeout`, and whose second replica waits for the first one's whole
run. Here the cap is 1 s so that the tests need not wait 30."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from zhike_runtime.db import Database
from zhike_runtime.migrations import MigrationTimeout, apply_migrations
from zhike_runtime.testing.processes import PostgresCluster

from .scratch_migrations import revision, scratch_scripts, versions

CLIENT_CAP_SECONDS = 1.0

WIDGET = revision(1, 'op.execute("CREATE TABLE widget (id integer PRIMARY KEY)")')
SLOW_INDEX = revision(2, 'op.execute("SELECT pg_sleep(2.5)")')
SLOWER_INDEX = revision(2, 'op.execute("SELECT pg_sleep(5)")')


async def test_a_migration_statement_may_run_longer_than_the_client_cap(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres_cluster.create_database()
    # Two replicas starting together: the second waits on the first one's advisory lock for
    # all of its 2.5 s statement, longer than the cap too.
    replicas = [Database(url, command_timeout_seconds=CLIENT_CAP_SECONDS) for _ in range(2)]
    scripts = scratch_scripts(tmp_path / "scripts", WIDGET, SLOW_INDEX)
    try:
        started = time.monotonic()
        await asyncio.gather(
            *(apply_migrations(d, scripts, statement_timeout_seconds=300) for d in replicas)
        )
        assert time.monotonic() - started >= 2.5
        assert await versions(replicas[0]) == ("runtime_0003", "widget_0002")
        # The service's own connections keep their cap.
        async with replicas[0].engine.connect() as connection:
            with pytest.raises(TimeoutError):
                await connection.execute(sa.text("SELECT pg_sleep(1.5)"))
    finally:
        for database in replicas:
            await database.dispose()


async def test_a_statement_past_the_statement_timeout_stops_with_the_runbook_message(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    # The statement timeout (2 s) is above the client cap (1 s): PostgreSQL, not the client,
    # stops the statement, and the operator reads which limit it was.
    database = Database(postgres_cluster.create_database(), command_timeout_seconds=1.0)
    try:
        with pytest.raises(MigrationTimeout) as stopped:
            await apply_migrations(
                database,
                scratch_scripts(tmp_path / "scripts", WIDGET, SLOWER_INDEX),
                statement_timeout_seconds=2,
            )
        message = str(stopped.value)
        assert message.startswith("migration stopped: a statement ran longer than 2 s")
        assert "ZHIKE_MIGRATION_STATEMENT_TIMEOUT_SECONDS" in message
        assert "Nothing was changed" in message
        assert await versions(database) == (None, None)  # one transaction: all rolled back
    finally:
        await database.dispose()
