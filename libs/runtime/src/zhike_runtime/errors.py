"""Domain errors that every service raises and the gRPC layer maps to status codes.

Pure Python on purpose: domain code imports these without pulling in grpc or a database driver.
Each error carries data (which field, which resource), never a pre-formatted message alone.
"""

from __future__ import annotations

import datetime as dt
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


class ResourceExhausted(DomainError):
    """The caller is over a limit (a rate per customer, a quota) and may try again after
    `retry_after`. `limit` names the limit and its numbers ("10 notifications per party per
    minute"), never whose request it was or what it carried."""

    def __init__(self, limit: str, retry_after: dt.timedelta) -> None:
        self.limit = limit
        # Never negative: a limit that is over is over for some time still.
        self.retry_after = max(retry_after, dt.timedelta(0))
        super().__init__(
            f"over the limit of {limit}; retry after {self.retry_after.total_seconds():.3f}s"
        )
