"""Identity storage: SQLAlchemy tables (private), repositories, the unit of work, bulk loads."""

from pathlib import Path

# The Alembic scripts of identity's tables (app.py hands them to the runtime; bulk loads apply them).
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
