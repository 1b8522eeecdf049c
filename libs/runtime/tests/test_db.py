"""Database connections: what every PostgreSQL session of a service is set up with."""

from __future__ import annotations

import sqlalchemy as sa

from zhike_runtime.db import Database
from zhike_runtime.testing.processes import PostgresCluster


async def test_postgresql_sessions_run_without_jit(postgres_cluster: PostgresCluster) -> None:
    # JIT compiling a short query whose estimated cost crossed jit_above_cost took 5-15 ms.
    database = Database(postgres_cluster.create_database())
    try:
        async with database.session() as session:
            assert await session.scalar(sa.text("SHOW jit")) == "off"
    finally:
        await database.dispose()
