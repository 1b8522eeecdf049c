"""Issue 10, defect 2 (RELIABILITY R12, rolling updates): after SIGTERM a service flips its health
to NOT_SERVING at once but keeps answering for its lame-duck delay, so the calls that still reach
it while Kubernetes takes the pod out of the Service endpoints succeed."""

from __future__ import annotations

import asyncio
import signal

import grpc

from zhike_runtime.testing.processes import free_port
from zhike_runtime.testing.services import NOT_SERVING, authorised_channel, readiness

from .conftest import ServiceProcess, serving
from .journeys import link, source_record

LAME_DUCK_SECONDS = 3.0
CLIENTS = 8
# A call started this close to the end of the delay may reach the server after it: not counted.
MARGIN_SECONDS = 0.5


async def test_calls_through_a_sigterm_succeed_until_the_lame_duck_delay_ends(
    services: dict[str, ServiceProcess],
) -> None:
    identity = services["identity"]
    health_port = free_port()
    identity.extra_env |= {
        "ZHIKE_LAME_DUCK_SECONDS": str(LAME_DUCK_SECONDS),
        "ZHIKE_HEALTH_PORT": str(health_port),
    }
    await serving(identity)
    loop = asyncio.get_running_loop()

    outcomes: list[tuple[float, grpc.StatusCode]] = []  # (when the call started, its status)
    stop_sending = asyncio.Event()
    signalled = asyncio.Event()
    not_serving_at: list[float] = []

    async def client(n: int, channel: grpc.aio.Channel) -> None:
        i = 0
        while not stop_sending.is_set():
            started = loop.time()
            try:
                await link(channel, source_record("mobile_app", f"M-{n}-{i}"))
            except grpc.aio.AioRpcError as error:
                outcomes.append((started, error.code()))
                return  # this server is gone: a real client retries on another endpoint
            outcomes.append((started, grpc.StatusCode.OK))
            i += 1

    async def watch_health() -> None:
        """What the kubelet's readiness probe sees on the health port after the signal."""
        await signalled.wait()
        while not not_serving_at and loop.time() < sigterm_at + LAME_DUCK_SECONDS:
            try:
                if await readiness(health_port) == NOT_SERVING:
                    not_serving_at.append(loop.time())
            except grpc.aio.AioRpcError:
                return  # the process is gone already
            await asyncio.sleep(0.05)

    async with authorised_channel(identity.address) as channel:
        clients = [asyncio.create_task(client(n, channel)) for n in range(CLIENTS)]
        watcher = asyncio.create_task(watch_health())
        await asyncio.sleep(1.0)
        sigterm_at = loop.time()
        identity.signal(signal.SIGTERM)
        signalled.set()
        exit_code = await asyncio.to_thread(identity.wait, 30)
        stop_sending.set()
        await asyncio.gather(*clients, watcher)

    assert exit_code == 0
    lame_duck_ends = sigterm_at + LAME_DUCK_SECONDS
    failed_during_the_delay = [
        (round(started - sigterm_at, 2), code.name)
        for started, code in outcomes
        if code is not grpc.StatusCode.OK and started < lame_duck_ends - MARGIN_SECONDS
    ]
    assert failed_during_the_delay == []
    # The delay really carried traffic: calls started late in it were answered.
    assert any(
        code is grpc.StatusCode.OK and started > sigterm_at + LAME_DUCK_SECONDS / 2
        for started, code in outcomes
    )
    # Readiness flipped at once, so endpoints start being removed as the delay begins.
    assert not_serving_at, "health never answered NOT_SERVING after SIGTERM"
    assert not_serving_at[0] - sigterm_at < 1.0
    messages = [entry["message"] for entry in identity.logs()]
    assert "service stopped" in messages
