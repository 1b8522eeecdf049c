"""A store brought to an older schema, for tests of the migrations after it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from zhike_runtime.migrations import FIELD_KEYS


def upgrade_to(connection: Connection, scripts: Path, version_table: str, target: str) -> None:
    """Runs `scripts`' migrations up to `target` (a revision, or "head") on `connection`, with
    no field keys, as `apply_migrations` runs them. Use with `connection.run_sync`."""
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    config.attributes[FIELD_KEYS] = None
    command.upgrade(config, target)
