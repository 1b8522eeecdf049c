"""RPC metrics count the status a call really ended with, including a handler's own abort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from zhike.testing.v1 import events_pb2
from zhike_runtime.app import Platform, ServiceDefinition, Wiring
from zhike_runtime.auth.permissions import MethodRule
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel, eventually, running_service

PROBE = "zhike.testing.v1.Probe"


async def not_built_yet(
    _request: events_pb2.Ping, context: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "arrives with its own issue")
    raise AssertionError("abort returns no more")


def wire(_platform: Platform[ServiceSettings]) -> Wiring:
    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            not_built_yet,
            request_deserializer=events_pb2.Ping.FromString,
            response_serializer=events_pb2.Ping.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(PROBE, {"Later": handler}),)
        )

    return Wiring(grpc_registrations=[register])


ABORTING = ServiceDefinition(
    name="probe",
    settings_type=ServiceSettings,
    grpc_service_names=(PROBE,),
    migrations=None,
    stream=None,
    wire=wire,
    access_rules={f"/{PROBE}/Later": MethodRule("identity.party.read")},
)


def requests_by_code(reader: InMemoryMetricReader) -> dict[str, int]:
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "zhike.rpc.requests":
                    continue
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    code = str((point.attributes or {})["rpc.grpc.status_code"])
                    counts[code] = counts.get(code, 0) + int(point.value)
    return counts


async def test_a_handlers_own_abort_is_counted_with_its_status(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    reader = InMemoryMetricReader()
    async with running_service(
        ABORTING,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        nats_url=nats_server.url,
        telemetry=Telemetry("probe", metric_readers=[reader]),
    ) as service:
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            later = channel.unary_unary(
                f"/{PROBE}/Later",
                request_serializer=events_pb2.Ping.SerializeToString,
                response_deserializer=events_pb2.Ping.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await later(events_pb2.Ping(key="x"), timeout=5)
        assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED

        # A handler's abort sends the status to the client itself, before the interceptor
        # around it counts the call: the count may land just after the answer.
        async def counted() -> bool:
            return bool(requests_by_code(reader))

        await eventually(counted, timeout=5)
        assert requests_by_code(reader) == {"UNIMPLEMENTED": 1}
