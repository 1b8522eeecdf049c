"""Notifications storage: the service has no tables of its own yet (the runtime's outbox and inbox only)."""
