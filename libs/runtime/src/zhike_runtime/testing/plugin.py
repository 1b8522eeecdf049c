"""Pytest fixtures with real parts (registered through the `pytest11` entry point).

- `nats_server`: a fresh nats-server with JetStream on a free port (killable, restartable).
- `permissioned_nats`: the same, refusing anonymous clients, with the NATS allow-list's users
  (an NKey seed file each, `testing/nats_users.py`).
- `postgres_cluster`: one throwaway PostgreSQL cluster per test session (initdb + pg_ctl).
- `database_url`: parametrised over SQLite and PostgreSQL, a fresh database per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from zhike_runtime.testing.nats_users import PermissionedNats, permissioned_nats_server
from zhike_runtime.testing.processes import NatsServer, PostgresCluster, throwaway_postgres

# Tests assert behaviour, not speed: no per-example deadline. A first example that pays for a
# lazy load (a dictionary, a compiled rule set) on a busy 2-core CI machine is not a failure.
settings.register_profile("zhike", deadline=None)
settings.load_profile("zhike")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def permissioned_nats(tmp_path: Path) -> Iterator[PermissionedNats]:
    nats = permissioned_nats_server(tmp_path / "nats-permissioned")
    nats.server.start()
    yield nats
    nats.server.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    with throwaway_postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two empty databases of one kind: a store fed in order beside one fed shuffled."""
    if request.param == "sqlite":
        return (
            f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
            f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
        )
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return (cluster.create_database(), cluster.create_database())
