"""Resource limits (RELIABILITY.md S11) on a real in-process service: an oversized request and
calls beyond the concurrency limit are refused with RESOURCE_EXHAUSTED, and throughout the
plaintext health port answers SERVING, so the kubelet never restarts a pod for being busy.
Calls held open (headers sent, the request never) hold no slot without a valid token, and
with one no longer than their connection's age and grace."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from zhike.testing.v1 import events_pb2
from zhike_runtime.app import (
    Platform,
    RunningService,
    ServiceDefinition,
    Wiring,
    access_control,
)
from zhike_runtime.auth.audit import AuditLog
from zhike_runtime.auth.permissions import MethodRule
from zhike_runtime.db import Database
from zhike_runtime.grpc_server import LIVENESS, HealthReporter, build_server
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    SERVING,
    STAFF_ROLES,
    TEST_ISSUER,
    TEST_SETTINGS,
    authorised_channel,
    eventually,
    readiness,
    running_service,
    wait_serving,
)

MiB = 1024 * 1024
Service = RunningService[ServiceSettings]


class SlowWork:
    """A handler that holds its call open until the test releases it; and how many calls the
    server has taken up (looked up their method), whether or not their request came."""

    def __init__(self) -> None:
        self.started = 0
        self.taken_up = 0
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


LIMITS = "zhike.testing.v1.Limits"
METHOD_NAMES = ("Echo", "Slow")
ACCESS_RULES = {f"/{LIMITS}/{name}": MethodRule("identity.party.read") for name in METHOD_NAMES}


def registration(work: SlowWork) -> Callable[[grpc.aio.Server], None]:
    methods = {"Echo": echo, "Slow": work.slow}

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
            (Counted(grpc.method_handlers_generic_handler(LIMITS, handlers), work),)
        )

    return register


class Counted(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Counts the calls the server takes up: it looks their method up on their headers."""

    def __init__(self, handlers: grpc.GenericRpcHandler, work: SlowWork) -> None:
        self._handlers = handlers
        self._work = work

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        found = self._handlers.service(details)
        if found is not None:
            self._work.taken_up += 1
        return found


def definition(work: SlowWork) -> ServiceDefinition[ServiceSettings]:
    def wire(_platform: Platform[ServiceSettings]) -> Wiring:
        return Wiring(grpc_registrations=[registration(work)])

    return ServiceDefinition(
        name="limits",
        settings_type=ServiceSettings,
        grpc_service_names=(LIMITS,),
        migrations=None,
        stream=None,
        wire=wire,
        access_rules=ACCESS_RULES,
    )


@asynccontextmanager
async def limited_service(
    tmp_path: Path, nats_server: NatsServer, work: SlowWork, **limits: Any
) -> AsyncIterator[Service]:
    if "max_concurrent_rpcs" in limits:
        # Below it, as the settings require; one health call at a time is enough here.
        limits.setdefault("max_public_calls", 1)
    async with running_service(
        definition(work),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'limits.db'}",
        nats_url=nats_server.url,
        **limits,
    ) as service:
        await wait_serving(service.health_port)
        yield service


async def call(
    service: Service,
    method: str,
    request: events_pb2.Ping,
    timeout: float = 10,
    compression: grpc.Compression | None = None,
) -> events_pb2.Ping:
    async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = channel.unary_unary(
            f"/zhike.testing.v1.Limits/{method}",
            request_serializer=events_pb2.Ping.SerializeToString,
            response_deserializer=events_pb2.Ping.FromString,
        )
        response: events_pb2.Ping = await stub(request, timeout=timeout, compression=compression)
        return response


async def refused(
    service: Service,
    method: str,
    request: events_pb2.Ping,
    compression: grpc.Compression | None = None,
) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(service, method, request, compression=compression)
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


async def test_a_compressed_request_that_expands_past_the_limit_is_refused_and_health_answers(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    # 6 MiB of one letter travel as a few kilobytes of gzip: the limit holds for what they
    # expand to, not for what crossed the wire (RELIABILITY.md, bad input 17).
    async with limited_service(tmp_path, nats_server, SlowWork()) as service:
        expanding = events_pb2.Ping(key="x" * (6 * MiB))
        code = await refused(service, "Echo", expanding, compression=grpc.Compression.Gzip)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await health_answers(service)
        fits = events_pb2.Ping(key="y" * MiB)
        assert await call(service, "Echo", fits, compression=grpc.Compression.Gzip) == fits


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


# --- Calls held open: headers sent, the request never (RELIABILITY.md S11, idle streams) ---


def hold(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.StreamUnaryCall[events_pb2.Ping, events_pb2.Ping]:
    """A call to a unary method that sends its headers and never its request: a client that
    opens calls and falls silent. Nothing the server does once the request arrives (the token
    check, the run-time cap) reaches such a call, unless it looks at the headers alone."""
    open_call = channel.stream_unary(
        f"/{LIMITS}/Echo",
        request_serializer=events_pb2.Ping.SerializeToString,
        response_deserializer=events_pb2.Ping.FromString,
    )
    return open_call(metadata=metadata)


async def ending_of(call: grpc.aio.Call) -> grpc.StatusCode:
    """The status a held call ends with; a call the server keeps fails the test (after a wait
    far beyond what ending it takes) instead of hanging it."""
    code: grpc.StatusCode = await asyncio.wait_for(call.code(), timeout=20)
    return code


def without_valid_token() -> list[tuple[tuple[str, str], ...]]:
    expired = TEST_ISSUER.mint(STAFF_ROLES, subject="held", ttl_seconds=-3600)
    return [
        (),
        (("authorization", "Bearer not-a-jwt"),),
        (("authorization", f"Bearer {expired}"),),
        (),
    ]


async def test_calls_held_open_without_a_valid_token_are_refused_and_free_their_slots(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    limit = len(without_valid_token())
    work = SlowWork()
    async with (
        limited_service(tmp_path, nats_server, work, max_concurrent_rpcs=limit) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as silent,
    ):
        held = [hold(silent, metadata) for metadata in without_valid_token()]
        for one in held:
            await one.wait_for_connection()
        # As many as the server runs at once, and none sends its request: each is refused on
        # its headers, so none holds a slot.
        outcomes = [await ending_of(one) for one in held]
        assert outcomes == [grpc.StatusCode.UNAUTHENTICATED] * limit
        assert (await call(service, "Echo", events_pb2.Ping(key="authorised"))).key == "authorised"
        assert await health_answers(service)
        assert work.started == 0


async def test_health_on_the_service_port_answers_while_calls_are_held_open_without_a_token(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    limit = 4
    work = SlowWork()
    async with (
        limited_service(tmp_path, nats_server, work, max_concurrent_rpcs=limit) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as silent,
    ):
        held = [hold(silent) for _ in range(limit)]
        for one in held:
            await one.wait_for_connection()

        async def all_taken_up() -> bool:
            return work.taken_up == limit

        await eventually(all_taken_up)

        # A probe of the service port (a load balancer's, grpc-health-probe's) and the
        # kubelet's of the health port.
        async def health_on_both_ports() -> bool:
            try:
                on_service_port = await readiness(service.grpc_port) == SERVING
            except grpc.aio.AioRpcError:  # RESOURCE_EXHAUSTED: the held calls fill the server
                return False
            return on_service_port and await health_answers(service)

        await eventually(health_on_both_ports)
        assert [await ending_of(one) for one in held] == [grpc.StatusCode.UNAUTHENTICATED] * limit


async def test_a_call_held_open_by_an_authenticated_caller_ends_with_its_connections_age(
    tmp_path: Path,
) -> None:
    # The service as build_server makes it, with a connection age of a second (minutes in a
    # deployment) and a grace of a second for the calls in flight.
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'aged.db'}"
    database = Database(database_url)
    await apply_migrations(database, None)
    settings = ServiceSettings(**(TEST_SETTINGS | {"database_url": database_url}))
    health = HealthReporter([LIMITS])
    await health.start()
    await health.update(True, broker_connected=True)
    server = build_server(
        Telemetry("limits"),
        health,
        [registration(SlowWork())],
        [LIMITS],
        access=access_control(settings, AuditLog(database, dt.timedelta(days=1100)), ACCESS_RULES),
        max_message_bytes=settings.max_message_bytes,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        deadline_cap_seconds=settings.max_rpc_seconds,
        enable_reflection=False,
        max_connection_age_seconds=1.0,
        max_connection_age_grace_seconds=1.0,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    token = (("authorization", f"Bearer {TEST_ISSUER.mint(STAFF_ROLES, subject='held')}"),)
    try:
        # One long-lived channel, as a service keeps to another it calls.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo_call = channel.unary_unary(
                f"/{LIMITS}/Echo",
                request_serializer=events_pb2.Ping.SerializeToString,
                response_deserializer=events_pb2.Ping.FromString,
            )
            before = await echo_call(events_pb2.Ping(key="before"), metadata=token, timeout=10)
            assert before.key == "before"
            held = hold(channel, token)
            await held.wait_for_connection()
            # The connection is told to go (GOAWAY) at its age and closed after the grace: the
            # held call ends then, as any call still on it would.
            assert await ending_of(held) is grpc.StatusCode.UNAVAILABLE
            # The same channel connects again by itself.
            after = await echo_call(events_pb2.Ping(key="after"), metadata=token, timeout=10)
            assert after.key == "after"
            assert await readiness(port) == SERVING
    finally:
        await server.stop(None)
        await database.dispose()


# --- Health and reflection need no token: bounded apart (RELIABILITY.md S11, idle streams) ---


def one_public_slot(
    tmp_path: Path, nats_server: NatsServer, **settings: Any
) -> AbstractAsyncContextManager[Service]:
    """A service with one slot for health and reflection, and a cap of 3 s on a call."""
    return limited_service(
        tmp_path,
        nats_server,
        SlowWork(),
        max_concurrent_rpcs=6,
        max_public_calls=1,
        max_rpc_seconds=3.0,
        **settings,
    )


def another_public_call_refused(port: int) -> Callable[[], Awaitable[bool]]:
    """A check that a health call on the service port is refused RESOURCE_EXHAUSTED: the public
    slots are all held."""

    async def another_public_call_is_refused() -> bool:
        try:
            await readiness(port)
        except grpc.aio.AioRpcError as error:
            return error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        return False

    return another_public_call_is_refused


def watch(channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamCall[Any, Any]:
    """A health Watch on the service port, without a token: a stream that never ends."""
    return health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))


async def test_health_watches_without_a_token_hold_no_more_than_the_public_calls_slots(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    work = SlowWork()
    async with (
        limited_service(
            tmp_path, nats_server, work, max_concurrent_rpcs=6, max_public_calls=2
        ) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as silent,
    ):
        watches = [watch(silent) for _ in range(6)]

        async def first_answer(one: grpc.aio.UnaryStreamCall[Any, Any]) -> str:
            try:
                answer = await asyncio.wait_for(one.read(), timeout=10)
            except grpc.aio.AioRpcError as error:
                return str(error.code().name)
            return "SERVING" if answer.status == SERVING else str(answer)

        # Two are served and stay open; the other four are refused at once.
        answers = [await first_answer(one) for one in watches]
        assert sorted(answers) == ["RESOURCE_EXHAUSTED"] * 4 + ["SERVING"] * 2
        # The slots left serve callers with a token, and health still answers.
        assert (await call(service, "Echo", events_pb2.Ping(key="authorised"))).key == "authorised"
        assert await health_answers(service)
        for one in watches:
            one.cancel()


async def test_a_health_check_held_open_without_its_request_counts_and_ends_after_the_cap(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with (
        one_public_slot(tmp_path, nats_server) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as silent,
    ):
        check = silent.stream_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        held = check()
        await held.wait_for_connection()

        # Once the server has taken it up, it holds the one public slot: every other public
        # call is refused meanwhile...
        await eventually(another_public_call_refused(service.grpc_port))
        # ...until the cap on a call's run time ends the silent one and frees it.
        assert await ending_of(held) is grpc.StatusCode.DEADLINE_EXCEEDED
        assert await readiness(service.grpc_port) == SERVING


async def test_a_reflection_stream_kept_open_asking_nothing_ends_after_the_cap_and_frees_its_slot(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with (
        one_public_slot(tmp_path, nats_server, grpc_reflection=True) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as silent,
    ):
        asking_nothing = silent.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )()
        await asking_nothing.wait_for_connection()

        await eventually(another_public_call_refused(service.grpc_port))
        assert await ending_of(asking_nothing) is grpc.StatusCode.DEADLINE_EXCEEDED
        assert await readiness(service.grpc_port) == SERVING
