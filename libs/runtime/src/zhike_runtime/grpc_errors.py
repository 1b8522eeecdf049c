"""The one table that maps domain errors to gRPC status codes, with rich error details.

INVALID_ARGUMENT carries a `google.rpc.BadRequest` naming every offending field; a caller over a
limit gets RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` (when to try again) and a
`google.rpc.QuotaFailure` naming the limit; anything not in the table becomes INTERNAL with a
reference to the trace, never the exception text.

The status travels as gRPC's reference implementation (grpcio-status) puts it: `abort_status`
gives the server its `grpc.Status` (code, message and the `grpc-status-details-bin` trailer), and
`rich_status` reads it back from a failed call, checking that code and message agree.
"""

from __future__ import annotations

from typing import cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from zhike_runtime.db import is_disconnect
from zhike_runtime.errors import (
    ConcurrentUpdate,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

# What an error answer quotes of a request is bounded: a violation may quote what the caller
# sent (an unknown template id, a field path), and a megabyte of it, or 10^5 violations, would
# exceed the metadata a client accepts (8 KB before gRPC starts refusing it), and the caller
# would see RESOURCE_EXHAUSTED instead of the error sent. The message and the details' trailer
# (base64) stay under about 5 KB together.
MAX_ERROR_TEXT = 160
MAX_MESSAGE = 1000
MAX_VIOLATIONS = 16


def _bounded(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_for(error: BaseException, trace_id: str) -> status_pb2.Status:
    """Builds the google.rpc.Status the client receives for an exception a handler raised."""
    if isinstance(error, InvalidArgument):
        shown = error.violations[:MAX_VIOLATIONS]
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_bounded(v.field), description=_bounded(v.description)
                )
                for v in shown
            ]
        )
        message = _bounded(
            "; ".join(f"{_bounded(v.field)}: {_bounded(v.description)}" for v in shown),
            MAX_MESSAGE,
        )
        if len(error.violations) > len(shown):
            message += f"; and {len(error.violations) - len(shown)} more"
        return _status(code_pb2.INVALID_ARGUMENT, message, bad_request)
    if isinstance(error, NotFound):
        info = error_details_pb2.ResourceInfo(
            resource_type=error.resource, resource_name=_bounded(error.resource_id)
        )
        return _status(code_pb2.NOT_FOUND, _bounded(str(error)), info)
    if isinstance(error, FailedPrecondition):
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="STATE",
                    subject=_bounded(error.subject),
                    description=_bounded(error.reason),
                )
            ]
        )
        return _status(code_pb2.FAILED_PRECONDITION, _bounded(error.reason), failure)
    if isinstance(error, Unauthenticated):
        return _status(code_pb2.UNAUTHENTICATED, str(error))
    if isinstance(error, PermissionDenied):
        denied = error_details_pb2.ErrorInfo(
            reason="PERMISSION_DENIED", domain="zhike", metadata={"method": error.method}
        )
        return _status(code_pb2.PERMISSION_DENIED, str(error), denied)
    if isinstance(error, DeadlineExceeded):
        return _status(code_pb2.DEADLINE_EXCEEDED, "the call ran out of time and was stopped")
    if isinstance(error, ResourceExhausted):
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromTimedelta(error.retry_after)
        quota = error_details_pb2.QuotaFailure(
            violations=[error_details_pb2.QuotaFailure.Violation(description=_bounded(error.limit))]
        )
        return _status(code_pb2.RESOURCE_EXHAUSTED, _bounded(str(error)), retry, quota)
    if isinstance(error, ConcurrentUpdate):
        return _status(code_pb2.ABORTED, "concurrent update; retry the request")
    if isinstance(error, Unavailable) or is_disconnect(error):
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(500)
        return _status(code_pb2.UNAVAILABLE, "a dependency is unavailable; retry later", retry)
    return _status(code_pb2.INTERNAL, f"internal error (trace {trace_id})")


def _status(code: int, message: str, *details: Message) -> status_pb2.Status:
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status


def abort_status(status: status_pb2.Status) -> grpc.Status:
    """What `ServicerContext.abort_with_status` takes: the code, the message, and the status
    itself in the `grpc-status-details-bin` trailer."""
    return cast(grpc.Status, rpc_status.to_status(status))


def grpc_code(status: status_pb2.Status) -> grpc.StatusCode:
    return cast(grpc.StatusCode, abort_status(status).code)


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a failed call carries, None when it carries none. Raises ValueError
    when the trailer's code or message disagree with the call's own (a broken server)."""
    return cast(status_pb2.Status | None, rpc_status.from_call(error))
