"""Identity storage: SQLAlchemy tables (private), repositories and the unit of work."""
