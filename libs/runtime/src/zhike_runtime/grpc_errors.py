"""The one table that maps domain errors to gRPC status codes, with rich error details.

INVALID_ARGUMENT carries a `google.rpc.BadRequest` naming every offending field; anything not in
the table becomes INTERNAL with a reference to the trace, never the exception text.

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
    Unauthenticated,
    Unavailable,
)


def status_for(error: BaseException, trace_id: str) -> status_pb2.Status:
    """Builds the google.rpc.Status the client receives for an exception a handler raised."""
    if isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        return _status(code_pb2.INVALID_ARGUMENT, str(error), bad_request)
    if isinstance(error, NotFound):
        info = error_details_pb2.ResourceInfo(
            resource_type=error.resource, resource_name=error.resource_id
        )
        return _status(code_pb2.NOT_FOUND, str(error), info)
    if isinstance(error, FailedPrecondition):
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="STATE", subject=error.subject, description=error.reason
                )
            ]
        )
        return _status(code_pb2.FAILED_PRECONDITION, error.reason, failure)
    if isinstance(error, Unauthenticated):
        return _status(code_pb2.UNAUTHENTICATED, str(error))
    if isinstance(error, PermissionDenied):
        denied = error_details_pb2.ErrorInfo(
            reason="PERMISSION_DENIED", domain="zhike", metadata={"method": error.method}
        )
        return _status(code_pb2.PERMISSION_DENIED, str(error), denied)
    if isinstance(error, DeadlineExceeded):
        return _status(code_pb2.DEADLINE_EXCEEDED, "the call ran out of time and was stopped")
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
