"""Offers storage: SQLAlchemy tables (private) and the repository."""
