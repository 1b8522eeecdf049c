"""Caller identity, access control and the audit log (issue 9: security)."""
