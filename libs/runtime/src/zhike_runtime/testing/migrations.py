"""A store brought to an older schema, for tests of the migrations after it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from zhike_runtime.migrations import (
    FIELD_KEYS,
    RUNTIME_SCRIPTS,
    RUNTIME_VERSION_TABLE,
    SERVICE_VERSION_TABLE,
)


def upgrade_to(connection: Connection, scripts: Path, version_table: str, target: str) -> None:
    """Runs `scripts`' migrations up to `target` (a revision, or "head") on `connection`, with
    no field keys, as `apply_migrations` runs them. Use with `connection.run_sync`."""
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    config.attributes[FIELD_KEYS] = None
    command.upgrade(config, target)


def service_store_at(connection: Connection, scripts: Path, revision: str) -> None:
    """A store with the service's tables at `revision` (an older release's) and the runtime's
    (outbox, inbox) at head, for a test of the service's migrations after `revision`. Use with
    `connection.run_sync`."""
    upgrade_to(connection, RUNTIME_SCRIPTS, RUNTIME_VERSION_TABLE, "head")
    upgrade_to(connection, scripts, SERVICE_VERSION_TABLE, revision)
