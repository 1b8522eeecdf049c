"""A profile store that holds data upgrades from every earlier release to the newest schema,
its rows intact, on both databases. On SQLite, migrations that rebuild `profile` (Alembic's
batch mode: copy, DROP TABLE, rename) ran into the links that point at it."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from zhike_profile.app import DEFINITION
from zhike_runtime.db import Database
from zhike_runtime.migrations import SERVICE_VERSION_TABLE, apply_migrations
from zhike_runtime.testing.migrations import service_store_at

NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
PARTY = "00000000-0000-0000-0000-000000000001"


def _head() -> str:
    assert DEFINITION.migrations is not None
    head = ScriptDirectory(str(DEFINITION.migrations)).get_current_head()
    assert head is not None
    return head


def _link_columns(revision: str) -> str:
    # profile_0003 gave links the party identity named (no default).
    return ", linked_party_id" if revision >= "profile_0003" else ""


# Every release before profile_0008, whose rebuild of `profile` first failed on SQLite.
@pytest.mark.parametrize("revision", [f"profile_{n:04d}" for n in range(1, 8)])
async def test_a_populated_store_upgrades_to_the_newest_schema(
    database_url: str, revision: str
) -> None:
    assert DEFINITION.migrations is not None
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(service_store_at, DEFINITION.migrations, revision)
            await connection.execute(
                sa.text(
                    "INSERT INTO profile (party_id, created_at, updated_at)"
                    " VALUES (:party, :now, :now)"
                ),
                {"party": PARTY, "now": NOW},
            )
            extra = _link_columns(revision)
            await connection.execute(
                sa.text(
                    "INSERT INTO profile_source_record"
                    f" (source_system, source_record_id, party_id, linked_at{extra})"
                    f" VALUES ('core', 'C-1', :party, :now{', :party' if extra else ''})"
                ),
                {"party": PARTY, "now": NOW},
            )

        await apply_migrations(database, DEFINITION.migrations)

        async with database.engine.connect() as connection:
            version = await connection.scalar(
                sa.text(f"SELECT version_num FROM {SERVICE_VERSION_TABLE}")
            )
            profiles = (
                await connection.execute(
                    sa.text("SELECT party_id, forwarding_version, forwarding_ended FROM profile")
                )
            ).all()
            links = (
                await connection.execute(
                    sa.text(
                        "SELECT source_system, source_record_id, party_id, linked_party_id"
                        " FROM profile_source_record"
                    )
                )
            ).all()
    finally:
        await database.dispose()
    assert version == _head()
    assert [tuple(row) for row in profiles] == [(PARTY, 0, False)]
    assert [tuple(row) for row in links] == [("core", "C-1", PARTY, PARTY)]
