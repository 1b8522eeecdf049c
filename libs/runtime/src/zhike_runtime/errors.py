"""Domain errors that every service raises and the gRPC layer maps to status codes.

Pure Python on purpose: domain code imports these without pulling in grpc or a database driver.
Each error carries data (which field, which resource), never a pre-formatted message alone.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One offending field: its path in the request (`source_record.key.source_system`) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a use case may raise on purpose."""


class InvalidArgument(DomainError):
    """The request is malformed; every offending field is named."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class NotFound(DomainError):
    def __init__(self, resource: str, resource_id: str) -> None:
        self.resource = resource
        self.resource_id = resource_id
        super().__init__(f"{resource} {resource_id!r} not found")


class FailedPrecondition(DomainError):
    """The request is valid but the system is not in a state where it can be applied."""

    def __init__(self, reason: str, subject: str = "") -> None:
        self.reason = reason
        self.subject = subject
        super().__init__(reason)


class ConcurrentUpdate(DomainError):
    """Another writer changed the same rows first; the caller may retry the whole use case."""


class Unauthenticated(DomainError):
    """The caller did not prove who it is (no, bad or expired token). Says why, never the token."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    def __init__(self, method: str, reason: str) -> None:
        self.method = method
        self.reason = reason
        super().__init__(f"{method}: {reason}")


class DeadlineExceeded(DomainError):
    """The call ran out of time (the caller's deadline or the server's cap) and was stopped."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"stopped after {seconds:.3f}s")


class Unavailable(DomainError):
    """A dependency (database, message bus) cannot be reached right now; retry later."""
