"""Migration identity_0006 on both databases: a party retired before forwarding versions starts
at version 1 (its merge was its first forwarding), a live party at 0, so the next change of
where a retired id leads is told with a version above what consumers were told."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from zhike_identity.app import DEFINITION
from zhike_identity.storage.schema import party
from zhike_runtime.db import Database
from zhike_runtime.migrations import (
    apply_migrations,
)
from zhike_runtime.testing.migrations import service_store_at

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
RETIRED, SURVIVOR = (str(uuid.UUID(int=n)) for n in range(1, 3))


async def test_parties_retired_before_the_upgrade_start_at_forwarding_version_one(
    database_url: str,
) -> None:
    assert DEFINITION.migrations is not None
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(service_store_at, DEFINITION.migrations, "identity_0005")
            await connection.execute(
                sa.text(
                    "INSERT INTO party (party_id, created_at, retired_into, retired_at) "
                    "VALUES (:retired, :now, :survivor, :now), (:survivor, :now, NULL, NULL)"
                ),
                {"retired": RETIRED, "survivor": SURVIVOR, "now": NOW},
            )

        await apply_migrations(database, DEFINITION.migrations)

        async with database.session() as session:
            rows = await session.execute(sa.select(party.c.party_id, party.c.forwarding_version))
            versions = {party_id: version for party_id, version in rows}
    finally:
        await database.dispose()
    assert versions == {RETIRED: 1, SURVIVOR: 0}
