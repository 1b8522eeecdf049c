"""The migrations build exactly the tables storage/schema.py describes (SQLite and PostgreSQL),
so the code and a migrated database cannot drift apart."""

from __future__ import annotations

from zhike_profile.app import DEFINITION
from zhike_profile.storage import schema
from zhike_runtime.testing.services import schema_drift


async def test_the_migrated_database_matches_the_schema(database_url: str) -> None:
    assert await schema_drift(database_url, DEFINITION.migrations, schema.metadata) == []
