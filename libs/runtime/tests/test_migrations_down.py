"""Taking a database down to a named revision (`migrate --down-to`), before rolling a release
back: the service's revisions first, then the runtime's (the reverse of how they went up), in
one transaction that a one-way revision refuses whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from zhike_runtime.db import Database
from zhike_runtime.migrations import MigrationRefused, apply_migrations, downgrade_migrations

from .scratch_migrations import revision, scratch_scripts, versions

WIDGET = revision(
    1,
    'op.execute("CREATE TABLE widget (id integer PRIMARY KEY)")',
    'op.execute("DROP TABLE widget")',
)
GADGET = revision(
    2,
    'op.execute("CREATE TABLE gadget (id integer PRIMARY KEY)")',
    'op.execute("DROP TABLE gadget")',
)
# A service's revision that builds on a runtime table: undone after the runtime's, PostgreSQL
# refuses to drop the table under it.
AUDIT_VIEW = revision(
    2,
    'op.execute("CREATE VIEW audit_actors AS SELECT DISTINCT actor FROM audit_record")',
    'op.execute("DROP VIEW audit_actors")',
)
ONE_WAY = revision(
    2,
    'op.execute("CREATE TABLE sealed (id integer PRIMARY KEY)")',
    'raise RuntimeError("widget_0002 cannot be downgraded: the plain text is gone")',
)
SPROCKET = revision(
    3,
    'op.execute("CREATE TABLE sprocket (id integer PRIMARY KEY)")',
    'op.execute("DROP TABLE sprocket")',
)


async def _tables(database: Database) -> set[str]:
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        views = await connection.run_sync(lambda sync: sa.inspect(sync).get_view_names())
    return set(names) | set(views)


async def test_down_one_revision_and_back_up(database_url: str, tmp_path: Path) -> None:
    database = Database(database_url)
    scripts = scratch_scripts(tmp_path / "scripts", WIDGET, GADGET)
    try:
        await apply_migrations(database, scripts)

        undone = await downgrade_migrations(database, scripts, ["widget_0001"])

        assert undone == ["widget_0002"]
        assert await versions(database) == ("runtime_0003", "widget_0001")
        assert "gadget" not in await _tables(database)
        assert "widget" in await _tables(database)
        # Already there: nothing to undo.
        assert await downgrade_migrations(database, scripts, ["widget_0001"]) == []

        await apply_migrations(database, scripts)
        assert await versions(database) == ("runtime_0003", "widget_0002")
        assert "gadget" in await _tables(database)
    finally:
        await database.dispose()


async def test_the_service_goes_down_before_the_runtime_it_builds_on(
    database_url: str, tmp_path: Path
) -> None:
    database = Database(database_url)
    scripts = scratch_scripts(tmp_path / "scripts", WIDGET, AUDIT_VIEW)
    try:
        await apply_migrations(database, scripts)

        undone = await downgrade_migrations(database, scripts, ["runtime_0001", "widget_0001"])

        assert undone == ["widget_0002", "runtime_0003", "runtime_0002"]
        assert await versions(database) == ("runtime_0001", "widget_0001")
        tables = await _tables(database)
        assert "audit_record" not in tables
        assert "audit_actors" not in tables
        await apply_migrations(database, scripts)
        assert await versions(database) == ("runtime_0003", "widget_0002")
    finally:
        await database.dispose()


async def test_a_one_way_revision_on_the_way_refuses_the_whole_downgrade(
    database_url: str, tmp_path: Path
) -> None:
    database = Database(database_url)
    scripts = scratch_scripts(tmp_path / "scripts", WIDGET, ONE_WAY, SPROCKET)
    try:
        await apply_migrations(database, scripts)

        with pytest.raises(MigrationRefused) as refused:
            await downgrade_migrations(database, scripts, ["widget_0001"])

        message = str(refused.value)
        assert message.startswith("migration stopped: widget_0002 cannot be undone")
        assert "the plain text is gone" in message
        assert "Nothing was changed" in message
        # widget_0003 had gone down before widget_0002 refused: back as it was.
        assert await versions(database) == ("runtime_0003", "widget_0003")
        assert {"sealed", "sprocket"} <= await _tables(database)
    finally:
        await database.dispose()


async def test_a_revision_that_is_not_on_the_way_down_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    database = Database(database_url)
    scripts = tmp_path / "scripts"
    try:
        await apply_migrations(database, scratch_scripts(scripts, WIDGET))
        # The next release's scripts, not applied yet: nothing of widget_0002 to undo.
        scratch_scripts(scripts, WIDGET, GADGET)
        with pytest.raises(MigrationRefused, match="widget_0002 is not applied"):
            await downgrade_migrations(database, scripts, ["widget_0002"])
        with pytest.raises(MigrationRefused, match="no revision widget_0042"):
            await downgrade_migrations(database, scripts, ["widget_0042"])
        with pytest.raises(MigrationRefused, match="two revisions of one"):
            await downgrade_migrations(database, scripts, ["runtime_0001", "runtime_0002"])
        assert await versions(database) == ("runtime_0003", "widget_0001")
    finally:
        await database.dispose()
