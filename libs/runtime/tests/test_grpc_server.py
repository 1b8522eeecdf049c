"""The shared gRPC server: error mapping, limits, health that follows dependencies."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.exc import OperationalError

from zhike.testing.v1 import events_pb2
from zhike_runtime.app import Platform, RunningService, ServiceDefinition, Wiring
from zhike_runtime.auth.permissions import MethodRule
from zhike_runtime.errors import FieldViolation, InvalidArgument, NotFound
from zhike_runtime.grpc_errors import rich_status
from zhike_runtime.grpc_server import BROKER, LIVENESS
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.processes import NatsServer, throwaway_postgres
from zhike_runtime.testing.services import (
    NOT_SERVING,
    SERVING,
    TEST_SETTINGS,
    authorised_channel,
    eventually,
    readiness,
    running_service,
)

Behaviour = Callable[
    [events_pb2.Ping, grpc.aio.ServicerContext[Any, Any]], Awaitable[events_pb2.Ping]
]


async def invalid(
    _request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    raise InvalidArgument(
        [FieldViolation("party.name", "is required"), FieldViolation("party.id", "must be a UUID")]
    )


async def verbose(
    _request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    # As a request of 10^5 bad elements, each quoted back, would be refused.
    raise InvalidArgument(
        [FieldViolation(f"items[{i}]", "unknown code " + "x" * 1000) for i in range(10**5)]
    )


async def missing(
    _request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    raise NotFound("party", "0190-…")


async def missing_pasted_id_number(
    _request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    # A teller pasted a resident ID number into a notification id field.
    raise NotFound("notification", "440306198505120028")


async def crash(
    _request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    raise RuntimeError("secret connection string postgres://admin:hunter2@db")


async def refused_while_handling(
    _request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    # As a validation that turns a parser's error into a violation does: the error raised
    # inside the except block has the parser's, which names the customer, as its context.
    violations = [FieldViolation("full_name", "not usable")]
    try:
        raise ValueError("'Иван Петров' is neither Hanzi nor Latin letters")
    except ValueError:
        raise_invalid(violations)  # raised by a call, as Violations.raise_if_any raises
    return events_pb2.Ping()


def raise_invalid(violations: list[FieldViolation]) -> None:
    raise InvalidArgument(violations)


async def database_gone(
    _request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


async def echo(
    request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    return request


METHODS: dict[str, Behaviour] = {
    "Invalid": invalid,
    "Verbose": verbose,
    "Missing": missing,
    "MissingPastedIdNumber": missing_pasted_id_number,
    "Crash": crash,
    "RefusedWhileHandling": refused_while_handling,
    "DatabaseGone": database_gone,
    "Echo": echo,
}


def wire(_platform: Platform[ServiceSettings]) -> Wiring:
    def register(server: grpc.aio.Server) -> None:
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=events_pb2.Ping.FromString,
                response_serializer=events_pb2.Ping.SerializeToString,
            )
            for name, behaviour in METHODS.items()
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("zhike.testing.v1.Probe", handlers),)
        )

    return Wiring(grpc_registrations=[register])


PROBE = ServiceDefinition(
    name="probe",
    settings_type=ServiceSettings,
    grpc_service_names=("zhike.testing.v1.Probe",),
    migrations=None,
    stream=None,
    wire=wire,
    access_rules={
        f"/zhike.testing.v1.Probe/{name}": MethodRule("identity.party.read") for name in METHODS
    },
)


@pytest.fixture
async def probe(
    tmp_path: Path, nats_server: NatsServer
) -> AsyncIterator[RunningService[ServiceSettings]]:
    async with running_service(
        PROBE, database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", nats_url=nats_server.url
    ) as service:
        yield service


async def call(port: int, method: str, request: events_pb2.Ping) -> events_pb2.Ping:
    async with authorised_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(
            f"/zhike.testing.v1.Probe/{method}",
            request_serializer=events_pb2.Ping.SerializeToString,
            response_deserializer=events_pb2.Ping.FromString,
        )
        response: events_pb2.Ping = await stub(request, timeout=5)
        return response


def details(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    status = rich_status(error)
    assert status is not None, "no rich status in the trailers"
    return status


async def refused_as_bad_request(
    port: int, method: str
) -> tuple[grpc.aio.AioRpcError, error_details_pb2.BadRequest]:
    """The INVALID_ARGUMENT a call of `method` is refused with, and its BadRequest detail."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(port, method, events_pb2.Ping())
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert details(raised.value).details[0].Unpack(bad_request)
    return raised.value, bad_request


async def test_invalid_argument_names_every_offending_field(
    probe: RunningService[ServiceSettings],
) -> None:
    _error, bad_request = await refused_as_bad_request(probe.grpc_port, "Invalid")
    assert [v.field for v in bad_request.field_violations] == ["party.name", "party.id"]


async def test_a_refusal_quoting_much_of_the_request_reaches_the_caller_bounded(
    probe: RunningService[ServiceSettings],
) -> None:
    # Unbounded, the status would exceed the metadata a client accepts, and the caller would
    # see another error than INVALID_ARGUMENT.
    error, bad_request = await refused_as_bad_request(probe.grpc_port, "Verbose")

    assert len(bad_request.field_violations) == 16
    assert max(len(v.description) for v in bad_request.field_violations) == 160
    assert (error.details() or "").endswith("…; and 99984 more")


async def test_not_found_maps_to_not_found(probe: RunningService[ServiceSettings]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(probe.grpc_port, "Missing", events_pb2.Ping())
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def test_the_log_line_of_a_rejected_call_masks_the_values_in_its_reason(
    probe: RunningService[ServiceSettings],
) -> None:
    with captured_json_logs() as lines, pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(probe.grpc_port, "MissingPastedIdNumber", events_pb2.Ping())
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    [rejected] = [json.loads(line) for line in lines if '"rpc rejected"' in line]
    assert rejected["reason"] == "NotFound: notification *** not found"
    assert not [line for line in lines if "440306198505120028" in line]


async def test_unexpected_errors_are_internal_and_leak_nothing(
    probe: RunningService[ServiceSettings],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(probe.grpc_port, "Crash", events_pb2.Ping())
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert "hunter2" not in (raised.value.details() or "")
    assert "RuntimeError" not in (raised.value.details() or "")
    assert "trace" in (raised.value.details() or "")


async def test_the_server_span_records_no_text_of_the_errors_a_call_failed_with(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    exporter = InMemorySpanExporter()
    async with running_service(
        PROBE,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        nats_url=nats_server.url,
        telemetry=Telemetry(PROBE.name, extra_span_processors=[SimpleSpanProcessor(exporter)]),
    ) as service:
        for method in ("Crash", "RefusedWhileHandling"):
            with pytest.raises(grpc.aio.AioRpcError):
                await call(service.grpc_port, method, events_pb2.Ping())

    recorded = [
        str(value)
        for span in exporter.get_finished_spans()
        for event in span.events
        for value in (event.attributes or {}).values()
    ]
    assert recorded  # the exceptions were recorded: what they say is checked below
    assert not [text for text in recorded if "hunter2" in text or "Иван" in text]


async def test_a_lost_database_is_unavailable_with_a_retry_hint(
    probe: RunningService[ServiceSettings],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(probe.grpc_port, "DatabaseGone", events_pb2.Ping())
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    assert details(raised.value).details[0].Unpack(retry)


async def test_a_request_over_the_size_limit_is_refused_and_the_server_lives_on(
    probe: RunningService[ServiceSettings],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(probe.grpc_port, "Echo", events_pb2.Ping(key="x" * (5 * 1024 * 1024)))
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await call(probe.grpc_port, "Echo", events_pb2.Ping(key="ok"))).key == "ok"
    assert await readiness(probe.grpc_port, LIVENESS) == SERVING


async def test_health_is_also_served_on_the_plaintext_health_port(
    probe: RunningService[ServiceSettings],
) -> None:
    assert probe.health_port
    assert probe.health_port != probe.grpc_port

    async def ready() -> bool:
        return await readiness(probe.health_port) == SERVING

    await eventually(ready)
    assert await readiness(probe.health_port, "zhike.testing.v1.Probe") == SERVING


async def test_a_background_loop_failing_as_it_is_cancelled_leaves_the_rest_of_the_stop_to_run(
    tmp_path: Path, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Cancelled inside a query, a loop can end with the driver's error instead of
    # CancelledError (asyncpg: "another operation is in progress"); the broker and the
    # database must still be closed.
    def wire_failing(platform: Platform[ServiceSettings]) -> Wiring:
        wiring = wire(platform)

        async def cut_short() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("a query cut short") from None

        wiring.background["cut-short"] = cut_short
        return wiring

    async with running_service(
        dataclasses.replace(PROBE, wire=wire_failing),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        nats_url=nats_server.url,
    ) as service:
        await eventually(lambda: _connected(service))

    assert not service.bus.is_connected
    assert [
        record.task  # type: ignore[attr-defined]
        for record in caplog.records
        if record.getMessage() == "background task failed as the service stopped"
    ] == ["cut-short"]


async def _connected(service: RunningService[ServiceSettings]) -> bool:
    return service.bus.is_connected


async def test_readiness_follows_the_database_not_nats_and_liveness_follows_neither(
    nats_server: NatsServer,
) -> None:
    metrics = InMemoryMetricReader()
    with throwaway_postgres() as cluster:
        url = cluster.create_database()
        async with running_service(
            PROBE,
            database_url=url,
            nats_url=nats_server.url,
            telemetry=Telemetry(PROBE.name, metric_readers=[metrics]),
        ) as service:
            port = service.grpc_port
            await expect_readiness(port, SERVING)
            await expect_readiness(port, SERVING, BROKER)
            assert nats_connected(metrics) == {"probe": 1}

            # A broker outage: requests need only the database (writes wait in the outbox), so
            # the pod stays in the Service endpoints and answers; the broker's state is a metric.
            nats_server.kill()

            async def broker_lost() -> bool:
                return not service.bus.is_connected

            await eventually(broker_lost)
            await asyncio.sleep(3 * TEST_SETTINGS["health_check_interval_seconds"])
            assert await readiness(port) == SERVING
            assert (await call(port, "Echo", events_pb2.Ping(key="k"))).key == "k"
            assert await readiness(port, LIVENESS) == SERVING
            await expect_readiness(port, NOT_SERVING, BROKER)
            assert nats_connected(metrics) == {"probe": 0}
            nats_server.start()
            await expect_readiness(port, SERVING, BROKER)
            assert nats_connected(metrics) == {"probe": 1}
            assert await readiness(port) == SERVING

            # A database outage: no request can succeed, so the pod leaves the endpoints, and
            # comes back without a restart.
            cluster.stop("fast")
            await expect_readiness(port, NOT_SERVING)
            assert await readiness(port, LIVENESS) == SERVING
            cluster.start()
            await expect_readiness(port, SERVING)


def nats_connected(reader: InMemoryMetricReader) -> dict[str, int]:
    """The latest zhike.nats.connected value of each service, from a real metric collection."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        str(point.attributes["service"]): int(point.value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "zhike.nats.connected"
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint) and point.attributes is not None
    }


async def expect_readiness(port: int, status: int, service: str = "") -> None:
    async def reached() -> bool:
        return await readiness(port, service) == status

    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    reached.__name__ = f"health of {service!r} == {name}"
    await eventually(reached, timeout=20, interval=0.1)
