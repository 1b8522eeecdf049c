"""A service's migration script directory written by a test: revision bodies given as text."""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa

from zhike_runtime.db import Database
from zhike_runtime.migrations import RUNTIME_SCRIPTS, RUNTIME_VERSION_TABLE, SERVICE_VERSION_TABLE


def revision(number: int, upgrade: str, downgrade: str = "pass") -> str:
    """The body of revision widget_<number> (after widget_<number - 1>): `upgrade` and
    `downgrade` are the statements of those functions, one per line, without indentation."""
    down_revision = "None" if number == 1 else f'"widget_{number - 1:04d}"'

    def body(statements: str) -> str:
        return "\n".join(f"    {line}" for line in statements.strip().splitlines())

    return (
        f'revision = "widget_{number:04d}"\n'
        f"down_revision = {down_revision}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        f"def upgrade() -> None:\n{body(upgrade)}\n\n\n"
        f"def downgrade() -> None:\n{body(downgrade)}\n"
    )


def scratch_scripts(directory: Path, *revisions: str) -> Path:
    """A service's migration script directory holding these revision bodies, in order (written
    again over an earlier call's: a later release's scripts)."""
    (directory / "versions").mkdir(parents=True, exist_ok=True)
    (directory / "env.py").write_text(
        "from zhike_runtime.migrations import run_in_alembic_env\n\nrun_in_alembic_env()\n",
        encoding="utf-8",
    )
    shutil.copy(RUNTIME_SCRIPTS / "script.py.mako", directory / "script.py.mako")
    for number, body in enumerate(revisions, start=1):
        (directory / "versions" / f"v{number:04d}.py").write_text(
            "import sqlalchemy as sa\nfrom alembic import op\n\n" + body, encoding="utf-8"
        )
    return directory


async def versions(database: Database) -> tuple[str | None, str | None]:
    """Where the runtime's and the service's migrations stand (None: no revision)."""
    found: list[str | None] = []
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        for table in (RUNTIME_VERSION_TABLE, SERVICE_VERSION_TABLE):
            query = sa.text(f"SELECT version_num FROM {table}")
            found.append(await connection.scalar(query) if table in tables else None)
    return found[0], found[1]
