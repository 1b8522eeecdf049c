"""The gRPC server every service runs: interceptors, health, reflection, limits.

OpenTelemetry's gRPC instrumentation gives each RPC a server span (continuing the caller's
`traceparent`); our interceptor, inside it, gives a JSON log line, request/error/latency metrics,
and maps exceptions through `grpc_errors.status_for`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from zhike_runtime.auth.access import (
    PURPOSE_HEADER,
    AccessControl,
    CallAccess,
    Caller,
    bind_call,
    unbind_call,
)
from zhike_runtime.auth.permissions import PUBLIC_PREFIXES
from zhike_runtime.errors import DeadlineExceeded, DomainError, FieldViolation, InvalidArgument
from zhike_runtime.grpc_errors import abort_status, grpc_code, status_for
from zhike_runtime.redaction import describe_error
from zhike_runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

LIVENESS = "liveness"
# The broker connection, for operators and tests (`zhike health --service nats`); no probe asks
# it, since requests do not need the broker (writes wait in the outbox).
BROKER = "nats"

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        telemetry: Telemetry,
        access: AccessControl,
        *,
        deadline_cap_seconds: float,
        max_public_calls: int = 64,
    ) -> None:
        self._telemetry = telemetry
        self._access = access
        self._deadline_cap = deadline_cap_seconds
        self._public = PublicCalls(max_public_calls, request_wait_seconds=deadline_cap_seconds)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None:
            return handler
        if method.startswith(PUBLIC_PREFIXES):
            return self._public.guard(handler)
        if handler.unary_unary is None:
            return _refusing(handler)
        # Who is calling, from the headers alone: the call holds one of the server's
        # maximum_concurrent_rpcs from its headers on, and a request that never comes would
        # hold it for ever (RELIABILITY.md S11). A caller refused here is answered at once by
        # a stream-unary handler, which runs without waiting for the request.
        pairs = tuple(details.invocation_metadata or ())
        try:
            caller: Caller | Exception = await self._access.authenticate(pairs)
        except Exception as error:  # noqa: BLE001 - answered, logged and counted as any error
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(method, handler.unary_unary, pairs, error),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(method, handler.unary_unary, pairs, caller),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _wrap(
        self,
        method: str,
        behavior: Behavior,
        pairs: tuple[tuple[str, Any], ...],
        caller: Caller | Exception,
    ) -> Behavior:
        """The call's handler, for a caller the headers named, or refused with `caller`, the
        error authentication raised (then `request` is the stream of a request never read)."""
        telemetry = self._telemetry
        access_control = self._access
        deadline_cap = self._deadline_cap

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            metadata = {key: value for key, value in pairs if isinstance(value, str)}
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            access: CallAccess | None = None
            # The server span is OpenTelemetry's (Telemetry.server_interceptor, outermost):
            # current here, it gets this call's status and the trace id for logs and errors.
            span = trace.get_current_span()
            trace_id = f"{span.get_span_context().trace_id:032x}"
            aborting: grpc.Status | None = None
            try:
                if isinstance(caller, Exception):  # refused on its headers: answered here
                    raise caller
                if isinstance(request, _Undecodable):
                    # e.g. invalid UTF-8 in a string field: refuse it as bad input rather
                    # than let grpc answer UNKNOWN with the parser's exception class.
                    raise InvalidArgument([FieldViolation("", f"not a valid request: {request}")])
                access = await access_control.authorise(
                    method, request, caller, metadata.get(PURPOSE_HEADER, "")[:200], trace_id
                )
                bound = bind_call(access)
                try:
                    response = await _within_deadline(
                        behavior(request, context), context, deadline_cap
                    )
                finally:
                    unbind_call(bound)
                # Audited before the response leaves: no audit record, no personal data.
                await access_control.record(access, "OK", trace_id)
                return response
            except grpc.aio.AbortError:
                # The handler answered with a status of its own (e.g. UNIMPLEMENTED): count
                # that status, not OK.
                code = _code_of(context.code())
                raise
            except Exception as error:
                status = status_for(error, trace_id)
                code = grpc_code(status)
                span.set_status(Status(StatusCode.ERROR, code.name))
                if isinstance(error, DomainError):
                    # The reason may quote what the caller sent (a not-found id can be an ID
                    # number pasted into the wrong field): masked, as every logged error is.
                    log.info(
                        "rpc rejected",
                        extra={
                            "method": method,
                            "code": code.name,
                            "reason": describe_error(error),
                        },
                    )
                else:
                    log.error(
                        "rpc failed",
                        exc_info=error,
                        extra={"method": method, "code": code.name},
                    )
                if access is not None:
                    await _record_failure(access_control, access, code, trace_id)
                aborting = abort_status(status)
            finally:
                elapsed = time.perf_counter() - started
                attributes = {"rpc.method": method, "rpc.grpc.status_code": code.name}
                telemetry.rpc_requests.add(1, attributes)
                telemetry.rpc_duration.record(elapsed, attributes)
                if code is not grpc.StatusCode.OK:
                    telemetry.rpc_errors.add(1, attributes)
                log.info(
                    "rpc",
                    extra={
                        "method": method,
                        "code": code.name,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            # Aborted outside the except block, so the AbortError carries no chain: the server
            # span records the exception it sees with the text of its whole chain (OpenTelemetry's
            # exception.stacktrace), and the error caught may hold a customer's values. abort()
            # rather than abort_with_status(): the span's context wrapper sees abort() and
            # records the code on the server span.
            assert aborting is not None  # every other way out of the try returned or raised
            await context.abort(
                aborting.code, aborting.details, trailing_metadata=aborting.trailing_metadata
            )

        return wrapped


class PublicCalls:
    """Health and reflection need no token, so without a bound a caller without one could hold
    every call slot of the server (`maximum_concurrent_rpcs`) with health Watch streams, which
    never end, or calls that never send their request (RELIABILITY.md S11). They get at most
    `limit` slots: one more is refused at once with RESOURCE_EXHAUSTED. Each is counted from its
    headers on (the handler is made one that runs before the request comes), and a request that
    does not come within `request_wait_seconds` ends the call, as does a reflection stream open
    that long."""

    def __init__(self, limit: int, *, request_wait_seconds: float) -> None:
        self._limit = limit
        self._request_wait = request_wait_seconds
        self.in_flight = 0

    def guard(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        parse, serialise = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.unary_unary),
                request_deserializer=parse,
                response_serializer=serialise,
            )
        if handler.unary_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, first_request_only=True),
                request_deserializer=parse,
                response_serializer=serialise,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.stream_stream, first_request_only=False),
                request_deserializer=parse,
                response_serializer=serialise,
            )
        return handler  # stream-unary: no public method is one

    async def _take(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.in_flight >= self._limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {self._limit} health or reflection calls at once on this port",
            )
        self.in_flight += 1

    async def _first(self, requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            async with asyncio.timeout(self._request_wait):
                async for request in requests:
                    return request
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the request never came")
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request was sent")

    def _unary(self, behaviour: Behavior) -> Behavior:
        async def call(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await self._take(context)
            try:
                return await behaviour(await self._first(requests, context), context)
            finally:
                self.in_flight -= 1

        return call

    def _streaming(self, behaviour: Callable[..., Any], *, first_request_only: bool) -> Behavior:
        async def call(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await self._take(context)
            try:
                if first_request_only:  # a health Watch: it lasts as long as its caller wants
                    request = await self._first(requests, context)
                    await _answered(behaviour(request, context), context)
                    return
                # Reflection: a caller's questions take milliseconds; a stream kept open asking
                # nothing is ended as a request that never comes is.
                try:
                    async with asyncio.timeout(self._request_wait):
                        await _answered(behaviour(requests, context), context)
                except TimeoutError:
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED, "the reflection stream stayed open"
                    )
            finally:
                self.in_flight -= 1

        return call


async def _answered(answers: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Runs a streaming handler to its end, whether it yields its answers or writes them itself
    (context.write, as health's Watch does)."""
    if inspect.isasyncgen(answers):
        async for answer in answers:
            await context.write(answer)
    else:
        await answers


def _code_of(value: object) -> grpc.StatusCode:
    """The StatusCode a context holds (grpc keeps the enum, or its integer on some paths)."""
    if isinstance(value, grpc.StatusCode):
        return value
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


async def _within_deadline(
    call: Awaitable[Any], context: grpc.aio.ServicerContext[Any, Any], cap_seconds: float
) -> Any:
    """Runs a handler for at most the caller's deadline, and never longer than the server's cap
    (a client that sets no deadline, or days, must not hold a worker or locks that long)."""
    remaining = context.time_remaining()
    limit = cap_seconds if remaining is None else min(remaining, cap_seconds)
    try:
        async with asyncio.timeout(limit) as scope:
            return await call
    except TimeoutError:
        if scope.expired():
            raise DeadlineExceeded(limit) from None
        raise


async def _record_failure(
    access_control: AccessControl, access: CallAccess, code: grpc.StatusCode, trace_id: str
) -> None:
    try:
        await access_control.record(access, code.name, trace_id)
    except Exception:
        # The call failed already; its status goes back as it is, the missing record is logged.
        log.exception("audit record of a failed call not written", extra={"method": access.method})


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Streaming methods are not in the access model yet: refused until they are."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED, "streaming methods are not open to callers"
        )

    async def refuse_stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        # A response stream, as the span interceptor iterates it; it never yields.
        await refuse(request, context)
        yield

    kinds = {
        "unary_stream": (grpc.unary_stream_rpc_method_handler, refuse_stream),
        "stream_unary": (grpc.stream_unary_rpc_method_handler, refuse),
        "stream_stream": (grpc.stream_stream_rpc_method_handler, refuse_stream),
    }
    for kind, (make, behaviour) in kinds.items():
        if getattr(handler, kind) is not None:
            return make(
                behaviour,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class _Undecodable:
    """Stands in for a request the protobuf parser refused, so the interceptor can answer it."""

    def __init__(self, error: DecodeError) -> None:
        self._reason = str(error)[:200]

    def __str__(self) -> str:
        return self._reason or "the message could not be parsed"


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return _Undecodable(error)

    return deserialize


# A connection is told to go (HTTP/2 GOAWAY) at this age, give or take the 10 % gRPC adds so
# that a replica's connections do not all go at once; its caller's channel opens a new one for
# the next call. Whatever a connection holds is then bounded in time (a call whose request
# never comes has no other limit), and callers spread over replicas added since they connected.
MAX_CONNECTION_AGE_SECONDS = 300.0
# Calls still running on a connection told to go get this long beyond the server's cap on a
# call's run time (`deadline_cap_seconds`) to finish; then the connection is closed, and a call
# still on it (one holding its request back) ends UNAVAILABLE.
CONNECTION_GRACE_BEYOND_CAP_SECONDS = 5.0


def server_options(
    max_message_bytes: int,
    *,
    max_connection_age_seconds: float,
    max_connection_age_grace_seconds: float,
) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_concurrent_streams", 256),
        ("grpc.max_metadata_size", 16 * 1024),
        ("grpc.max_connection_age_ms", round(max_connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", round(max_connection_age_grace_seconds * 1000)),
        # Two processes must never share a port silently.
        ("grpc.so_reuseport", 0),
    ]


class HealthReporter:
    """Readiness ("" and each service name) follows what a request needs, the database;
    BROKER reports the NATS connection; "liveness" only the process."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._readiness_names = ["", *service_names]
        self.serving = False
        self.broker_connected = False

    async def start(self) -> None:
        await self.servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await self._set_readiness(False)
        await self.servicer.set(BROKER, _status(False))

    async def update(self, ready: bool, *, broker_connected: bool) -> None:
        if ready != self.serving:
            log.info("readiness changed", extra={"serving": ready})
        if broker_connected != self.broker_connected:
            log.info("broker connection changed", extra={"connected": broker_connected})
        await self._set_readiness(ready)
        self.broker_connected = broker_connected
        await self.servicer.set(BROKER, _status(broker_connected))

    async def _set_readiness(self, ready: bool) -> None:
        self.serving = ready
        for name in self._readiness_names:
            await self.servicer.set(name, _status(ready))

    async def shutting_down(self) -> None:
        await self.servicer.enter_graceful_shutdown()


def _status(up: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    response = health_pb2.HealthCheckResponse
    return response.SERVING if up else response.NOT_SERVING


def build_server(
    telemetry: Telemetry,
    health_reporter: HealthReporter,
    registrations: Iterable[Callable[[grpc.aio.Server], None]],
    service_names: Iterable[str],
    *,
    access: AccessControl,
    pre_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    max_message_bytes: int,
    max_concurrent_rpcs: int,
    deadline_cap_seconds: float,
    enable_reflection: bool,
    max_public_calls: int = 64,
    max_connection_age_seconds: float = MAX_CONNECTION_AGE_SECONDS,
    max_connection_age_grace_seconds: float | None = None,
) -> grpc.aio.Server:
    """`max_connection_age_grace_seconds`: by default the cap on a call's run time and
    CONNECTION_GRACE_BEYOND_CAP_SECONDS, so that every call in flight can finish."""
    if max_connection_age_grace_seconds is None:
        max_connection_age_grace_seconds = (
            deadline_cap_seconds + CONNECTION_GRACE_BEYOND_CAP_SECONDS
        )
    server = grpc.aio.server(
        # Transport checks (the client certificate's name) before tokens, audit or handlers.
        interceptors=[
            # Outermost: a call the transport checks refuse still gets its span.
            telemetry.server_interceptor(),
            *pre_interceptors,
            ServiceInterceptor(
                telemetry,
                access,
                deadline_cap_seconds=deadline_cap_seconds,
                max_public_calls=max_public_calls,
            ),
        ],
        options=server_options(
            max_message_bytes,
            max_connection_age_seconds=max_connection_age_seconds,
            max_connection_age_grace_seconds=max_connection_age_grace_seconds,
        ),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    for register in registrations:
        register(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_reporter.servicer, server)
    if enable_reflection:
        names = [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
    return server


def build_health_server(health_reporter: HealthReporter) -> grpc.aio.Server:
    # Health calls take no time: the grace is the margin alone.
    options = server_options(
        64 * 1024,
        max_connection_age_seconds=MAX_CONNECTION_AGE_SECONDS,
        max_connection_age_grace_seconds=CONNECTION_GRACE_BEYOND_CAP_SECONDS,
    )
    server = grpc.aio.server(options=options)
    health_pb2_grpc.add_HealthServicer_to_server(health_reporter.servicer, server)
    return server
