"""The error table: a caller over a limit is answered RESOURCE_EXHAUSTED with when to try again
(google.rpc.RetryInfo) and which limit it is over (google.rpc.QuotaFailure), as the status
reaches the client in its trailer."""

from __future__ import annotations

import datetime as dt

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from zhike_runtime.errors import ResourceExhausted
from zhike_runtime.grpc_errors import MAX_ERROR_TEXT, abort_status, grpc_code, status_for

PER_MINUTE = "10 notifications per party per minute"


def details(
    status: status_pb2.Status,
) -> tuple[error_details_pb2.RetryInfo, error_details_pb2.QuotaFailure]:
    """The status's two details, in their order: when to retry, then which limit."""
    retry, quota = error_details_pb2.RetryInfo(), error_details_pb2.QuotaFailure()
    assert len(status.details) == 2
    assert status.details[0].Unpack(retry)
    assert status.details[1].Unpack(quota)
    return retry, quota


def test_a_caller_over_a_limit_is_told_when_to_retry_and_which_limit() -> None:
    status = status_for(ResourceExhausted(PER_MINUTE, dt.timedelta(seconds=42.5)), "trace")

    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert grpc_code(status) is grpc.StatusCode.RESOURCE_EXHAUSTED
    retry, quota = details(status)
    assert retry.retry_delay.ToTimedelta() == dt.timedelta(seconds=42.5)
    [violation] = quota.violations
    assert violation.description == PER_MINUTE
    assert violation.subject == ""  # the limit is named; whose request it was, never
    assert PER_MINUTE in status.message
    assert "42.500s" in status.message


def test_the_retry_delay_keeps_sub_second_precision_and_is_never_negative() -> None:
    fine = status_for(ResourceExhausted(PER_MINUTE, dt.timedelta(microseconds=1500)), "t")
    assert details(fine)[0].retry_delay.ToTimedelta() == dt.timedelta(microseconds=1500)

    past = status_for(ResourceExhausted(PER_MINUTE, dt.timedelta(seconds=-3)), "t")
    assert details(past)[0].retry_delay.ToTimedelta() == dt.timedelta(0)


def test_the_limit_named_is_bounded() -> None:
    status = status_for(ResourceExhausted("x" * 10_000, dt.timedelta(seconds=1)), "t")

    [violation] = details(status)[1].violations
    assert len(violation.description) == MAX_ERROR_TEXT
    assert len(status.message) == MAX_ERROR_TEXT


def test_the_details_travel_in_the_status_trailer() -> None:
    status = status_for(ResourceExhausted(PER_MINUTE, dt.timedelta(minutes=1)), "t")

    sent = abort_status(status)
    assert sent.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    [trailer] = [value for key, value in sent.trailing_metadata if key == "grpc-status-details-bin"]
    retry, quota = details(status_pb2.Status.FromString(trailer))
    assert retry.retry_delay.ToTimedelta() == dt.timedelta(minutes=1)
    assert quota.violations[0].description == PER_MINUTE
