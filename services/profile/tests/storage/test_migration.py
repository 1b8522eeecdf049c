"""The migrations build exactly the tables storage/schema.py describes (SQLite and PostgreSQL),
so the code and a migrated database cannot drift apart; and the hot reads they index use it."""

from __future__ import annotations

import sqlalchemy as sa

from zhike_profile.app import DEFINITION
from zhike_profile.storage import schema
from zhike_runtime.db import Database
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.testing.processes import PostgresCluster
from zhike_runtime.testing.services import schema_drift


async def test_the_migrated_database_matches_the_schema(database_url: str) -> None:
    assert await schema_drift(database_url, DEFINITION.migrations, schema.metadata) == []


async def test_a_partys_segments_are_replaced_through_an_index_on_its_id(
    postgres_cluster: PostgresCluster,
) -> None:
    # Each profile change deletes its party's segments by party id: without an index of its
    # own, the primary key (segment, party_id) left a scan of every party's segments.
    database = Database(postgres_cluster.create_database())
    try:
        await apply_migrations(database, DEFINITION.migrations)
        async with database.session() as session:
            await session.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(
                await session.scalars(
                    sa.text(
                        "EXPLAIN DELETE FROM profile_segment "
                        "WHERE party_id = ANY(CAST(:ids AS varchar[]))"
                    ),
                    {"ids": ["p1", "p2"]},
                )
            )
        assert "ix_profile_segment_party_id" in plan
    finally:
        await database.dispose()
