"""`python -m zhike_profile migrate --down-to REVISION`, the runbook's way to undo a release's
migrations before rolling it back, then `migrate` up again: a store holding a profile and its
link keeps them both ways, on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from zhike_profile.app import DEFINITION
from zhike_runtime.db import Database
from zhike_runtime.migrations import (
    SERVICE_VERSION_TABLE,
    apply_migrations,
    downgrade_migrations,
)
from zhike_runtime.testing.services import process_environment

NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
PARTY = "00000000-0000-0000-0000-000000000001"


def _migrate(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | process_environment() | {"ZHIKE_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "zhike_profile", "migrate", *arguments],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=120,
    )


async def _populated_store(database_url: str) -> None:
    database = Database(database_url)
    try:
        await apply_migrations(database, DEFINITION.migrations)
        async with database.engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO profile (party_id, created_at, updated_at)"
                    " VALUES (:party, :now, :now)"
                ),
                {"party": PARTY, "now": NOW},
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO profile_source_record (source_system, source_record_id,"
                    " party_id, linked_party_id, linked_at) VALUES ('core', 'C-1', :party,"
                    " :party, :now)"
                ),
                {"party": PARTY, "now": NOW},
            )
    finally:
        await database.dispose()


async def _populated_store_upgraded(database_url: str) -> None:
    database = Database(database_url)
    try:
        await apply_migrations(database, DEFINITION.migrations)
    finally:
        await database.dispose()


async def _state(database_url: str) -> tuple[str, set[str], list[tuple[object, ...]]]:
    database = Database(database_url)
    try:
        async with database.engine.connect() as connection:
            version = await connection.scalar(
                sa.text(f"SELECT version_num FROM {SERVICE_VERSION_TABLE}")
            )
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("profile")}
            )
            links = (
                await connection.execute(
                    sa.text(
                        "SELECT p.party_id, l.source_record_id FROM profile p"
                        " JOIN profile_source_record l ON l.party_id = p.party_id"
                    )
                )
            ).all()
    finally:
        await database.dispose()
    return str(version), columns, [tuple(row) for row in links]


@pytest.mark.slow
def test_migrate_down_one_revision_and_up_again(database_url: str) -> None:
    assert DEFINITION.migrations is not None
    head = ScriptDirectory(str(DEFINITION.migrations)).get_revision("head")
    assert head is not None
    assert isinstance(head.down_revision, str)
    asyncio.run(_populated_store(database_url))

    refused = _migrate(database_url, "--down-to", "profile_0042")
    assert refused.returncode == 1
    assert "migration stopped: no revision profile_0042" in refused.stdout
    done = _migrate(database_url, "--down-to", head.down_revision)
    assert done.returncode == 0, done.stderr
    assert asyncio.run(_state(database_url))[0] == head.down_revision

    done = _migrate(database_url)
    assert done.returncode == 0, done.stderr
    version, _columns, links = asyncio.run(_state(database_url))
    assert version == head.revision
    assert links == [(PARTY, "C-1")]


async def test_a_populated_store_goes_down_past_profile_0008_and_up_again(
    database_url: str,
) -> None:
    # profile_0008's downgrade rebuilds `profile` on SQLite, which the links point at.
    await _populated_store(database_url)
    database = Database(database_url)
    try:
        undone = await downgrade_migrations(database, DEFINITION.migrations, ["profile_0007"])
    finally:
        await database.dispose()
    assert undone[-1] == "profile_0008"
    version, columns, links = await _state(database_url)
    assert version == "profile_0007"
    assert "forwarding_version" not in columns
    assert links == [(PARTY, "C-1")]

    await _populated_store_upgraded(database_url)
    version, columns, links = await _state(database_url)
    assert "forwarding_version" in columns
    assert links == [(PARTY, "C-1")]
