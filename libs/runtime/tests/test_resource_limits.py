"""Resource limits (RELIABILITY.md S11) on a real in-process service: an oversized request and
calls beyond the concurrency limit are refused with RESOURCE_EXHAUSTED, and throughout the
plaintext health port answers SERVING, so the kubelet never restarts a pod for being busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from zhike.testing.v1 import events_pb2
from zhike_runtime.app import Platform, RunningService, ServiceDefinition, Wiring
from zhike_runtime.auth.permissions import MethodRule
from zhike_runtime.grpc_server import LIVENESS
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    SERVING,
    authorised_channel,
    eventually,
    readiness,
    running_service,
    wait_serving,
)

MiB = 1024 * 1024
Service = RunningService[ServiceSettings]


class SlowWork:
    """A handler that holds its call open until the test releases it."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def slow(
        self, request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> events_pb2.Ping:
        self.started += 1
        await self.release.wait()
        return request


async def echo(
    request: events_pb2.Ping, _ctx: grpc.aio.ServicerContext[Any, Any]
) -> events_pb2.Ping:
    return request


def definition(work: SlowWork) -> ServiceDefinition[ServiceSettings]:
    methods = {"Echo": echo, "Slow": work.slow}

    def wire(_platform: Platform[ServiceSettings]) -> Wiring:
        def register(server: grpc.aio.Server) -> None:
            handlers = {
                name: grpc.unary_unary_rpc_method_handler(
                    behaviour,
                    request_deserializer=events_pb2.Ping.FromString,
                    response_serializer=events_pb2.Ping.SerializeToString,
                )
                for name, behaviour in methods.items()
            }
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("zhike.testing.v1.Limits", handlers),)
            )

        return Wiring(grpc_registrations=[register])

    return ServiceDefinition(
        name="limits",
        settings_type=ServiceSettings,
        grpc_service_names=("zhike.testing.v1.Limits",),
        migrations=None,
        stream=None,
        wire=wire,
        access_rules={
            f"/zhike.testing.v1.Limits/{name}": MethodRule("identity.party.read")
            for name in methods
        },
    )


@asynccontextmanager
async def limited_service(
    tmp_path: Path, nats_server: NatsServer, work: SlowWork, **limits: Any
) -> AsyncIterator[Service]:
    async with running_service(
        definition(work),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}",
        nats_url=nats_server.url,
        **limits,
    ) as service:
        await wait_serving(service.health_port)
        yield service


async def call(
    service: Service, method: str, request: events_pb2.Ping, timeout: float = 10
) -> events_pb2.Ping:
    async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = channel.unary_unary(
            f"/zhike.testing.v1.Limits/{method}",
            request_serializer=events_pb2.Ping.SerializeToString,
            response_deserializer=events_pb2.Ping.FromString,
        )
        response: events_pb2.Ping = await stub(request, timeout=timeout)
        return response


async def refused(service: Service, method: str, request: events_pb2.Ping) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(service, method, request)
    return raised.value.code()


async def health_answers(service: Service) -> bool:
    return (
        await readiness(service.health_port) == SERVING
        and await readiness(service.health_port, LIVENESS) == SERVING
    )


@pytest.mark.parametrize(
    ("limit", "too_big", "fits"),
    [
        (None, 5 * MiB, 3 * MiB),  # the default of 4 MiB, against RELIABILITY.md's 5 MiB request
        (64 * 1024, 100 * 1024, 32 * 1024),  # a configured ZHIKE_MAX_MESSAGE_BYTES
    ],
    ids=["default", "configured"],
)
async def test_a_request_over_the_message_size_limit_is_refused_and_health_answers(
    tmp_path: Path, nats_server: NatsServer, limit: int | None, too_big: int, fits: int
) -> None:
    limits = {} if limit is None else {"max_message_bytes": limit}
    async with limited_service(tmp_path, nats_server, SlowWork(), **limits) as service:
        oversized = events_pb2.Ping(key="x" * too_big)
        assert await refused(service, "Echo", oversized) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await health_answers(service)
        assert len((await call(service, "Echo", events_pb2.Ping(key="y" * fits))).key) == fits


async def test_calls_beyond_the_concurrency_limit_are_refused_and_health_answers(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    work = SlowWork()
    async with limited_service(tmp_path, nats_server, work, max_concurrent_rpcs=2) as service:
        held = [
            asyncio.create_task(call(service, "Slow", events_pb2.Ping(key=f"held-{i}")))
            for i in range(2)
        ]

        async def both_running() -> bool:
            return work.started == 2

        await eventually(both_running)
        for method in ("Echo", "Slow"):
            beyond = await refused(service, method, events_pb2.Ping(key="beyond"))
            assert beyond is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await health_answers(service)
        assert work.started == 2  # the refused call never reached its handler

        work.release.set()
        assert {(await task).key for task in held} == {"held-0", "held-1"}
        assert (await call(service, "Echo", events_pb2.Ping(key="after"))).key == "after"
