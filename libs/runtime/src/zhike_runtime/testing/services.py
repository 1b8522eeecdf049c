"""Services started in-process for transport and cross-service tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from zhike_runtime.app import FaultHooks, RunningService, ServiceDefinition
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry

S = TypeVar("S", bound=ServiceSettings)

SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING

# Fast retries so that failure paths finish in seconds, not minutes.
TEST_SETTINGS: dict[str, Any] = {
    "grpc_host": "127.0.0.1",
    "grpc_port": 0,
    "health_port": 0,
    "consumer_backoff_seconds": [0.2, 0.2, 0.2, 0.2],
    "consumer_max_deliver": 5,
    "consumer_ack_wait_seconds": 2.0,
    "outbox_poll_seconds": 0.1,
    "health_check_interval_seconds": 0.2,
    "shutdown_grace_seconds": 5.0,
}


@asynccontextmanager
async def running_service(
    definition: ServiceDefinition[S],
    *,
    database_url: str,
    nats_url: str,
    telemetry: Telemetry | None = None,
    faults: FaultHooks | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningService[S]]:
    settings = definition.settings_type(
        **(TEST_SETTINGS | {"database_url": database_url, "nats_url": nats_url} | overrides)
    )
    service = RunningService(
        definition, settings, telemetry=telemetry, faults=faults or FaultHooks()
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def readiness(port: int, service: str = "") -> int:
    """The health status a probe would see (a HealthCheckResponse.ServingStatus value)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(response.status)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Waits until `check` is true; fails the test with a clear message on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {check.__name__}")


async def wait_serving(port: int, timeout: float = 15.0) -> None:
    async def serving() -> bool:
        try:
            return await readiness(port) == SERVING
        except grpc.aio.AioRpcError:  # not listening yet
            return False

    await eventually(serving, timeout=timeout, interval=0.1)
