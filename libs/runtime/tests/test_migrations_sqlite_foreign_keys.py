"""SQLite: a migration that rebuilds a table other rows point at (Alembic's batch mode copies
it, drops the original and renames the copy) runs with foreign keys off, as SQLite's documented
procedure for schema changes says, and is checked with `PRAGMA foreign_key_check` before it
commits: a migration that would leave a row pointing at nothing is refused and rolled back."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from zhike_runtime.db import Database
from zhike_runtime.migrations import MigrationRefused, apply_migrations

from .scratch_migrations import revision, scratch_scripts, versions

PARENT_AND_CHILD = revision(
    1,
    """
op.create_table("parent", sa.Column("id", sa.Integer, primary_key=True))
op.create_table(
    "child",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id"), nullable=False),
)
""",
)
# A column whose server default is an SQL expression (profile_0008's sa.false()): Alembic
# rebuilds the table on SQLite (copy, DROP TABLE parent, rename).
PARENT_GAINS_A_COLUMN = revision(
    2,
    """
with op.batch_alter_table("parent") as batch:
    batch.add_column(
        sa.Column("colour", sa.String(16), nullable=False, server_default=sa.text("'red'"))
    )
""",
)
ORPHANS_THE_CHILD = revision(
    2,
    """
op.execute("CREATE TABLE marker (id integer PRIMARY KEY)")
op.execute("DELETE FROM parent")
""",
)


def _sqlite(tmp_path: Path) -> Database:
    return Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")


async def _store_with_a_child(database: Database, scripts: Path) -> None:
    await apply_migrations(database, scripts)
    async with database.engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO parent (id) VALUES (1)"))
        await connection.execute(sa.text("INSERT INTO child (id, parent_id) VALUES (10, 1)"))


async def _foreign_keys_enforced(database: Database) -> bool:
    async with database.engine.connect() as connection:
        return bool(await connection.scalar(sa.text("PRAGMA foreign_keys")))


async def test_a_table_other_rows_point_at_is_rebuilt_with_its_rows(tmp_path: Path) -> None:
    database = _sqlite(tmp_path)
    scripts = tmp_path / "scripts"
    try:
        await _store_with_a_child(database, scratch_scripts(scripts, PARENT_AND_CHILD))

        await apply_migrations(
            database, scratch_scripts(scripts, PARENT_AND_CHILD, PARENT_GAINS_A_COLUMN)
        )

        assert await versions(database) == ("runtime_0003", "widget_0002")
        async with database.engine.connect() as connection:
            parents = (await connection.execute(sa.text("SELECT id, colour FROM parent"))).all()
            children = (await connection.execute(sa.text("SELECT id, parent_id FROM child"))).all()
        assert [tuple(row) for row in parents] == [(1, "red")]
        assert [tuple(row) for row in children] == [(10, 1)]
        # The connection the service goes on with enforces foreign keys again.
        assert await _foreign_keys_enforced(database)
    finally:
        await database.dispose()


async def test_a_migration_that_would_leave_a_row_pointing_at_nothing_is_refused(
    tmp_path: Path,
) -> None:
    database = _sqlite(tmp_path)
    scripts = tmp_path / "scripts"
    try:
        await _store_with_a_child(database, scratch_scripts(scripts, PARENT_AND_CHILD))

        with pytest.raises(MigrationRefused) as refused:
            await apply_migrations(
                database, scratch_scripts(scripts, PARENT_AND_CHILD, ORPHANS_THE_CHILD)
            )

        message = str(refused.value)
        assert message.startswith("migration stopped:")
        assert "1 in child pointing at parent" in message
        assert "Nothing was changed" in message
        assert await versions(database) == ("runtime_0003", "widget_0001")
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
            assert "marker" not in tables
            assert await connection.scalar(sa.text("SELECT count(*) FROM parent")) == 1
        assert await _foreign_keys_enforced(database)
    finally:
        await database.dispose()
