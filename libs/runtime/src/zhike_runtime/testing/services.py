"""Services started in-process for transport and cross-service tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import Connection

from zhike_runtime.app import FaultHooks, RunningService, ServiceDefinition
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.auth.development import (
    DEVELOPMENT_AUDIENCE,
    DEVELOPMENT_ISSUER,
    DevelopmentIssuer,
)
from zhike_runtime.auth.permissions import CUSTOMER_ROLES, DEFAULT_ROLES
from zhike_runtime.crypto import FieldKeys
from zhike_runtime.db import Database
from zhike_runtime.grpc_server import BROKER
from zhike_runtime.migrations import apply_migrations
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry

S = TypeVar("S", bound=ServiceSettings)
R = TypeVar("R")

SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING

# One development issuer per test process: services under test trust its key set, and `channel`
# mints its tokens.
TEST_ISSUER = DevelopmentIssuer(Path(tempfile.mkdtemp(prefix="zhike-test-issuer-")))


def _test_key(label: str) -> str:
    return base64.b64encode(hashlib.sha256(f"zhike test key: {label}".encode()).digest()).decode()


# Fixed field keys, derived from constant labels (tests only; a real deployment's come from a
# Secret): what one test wrote, another part of it can open, and a second key is at hand for
# rotation tests.
TEST_DATA_KEY_ID = "test1"
TEST_SECOND_DATA_KEY_ID = "test2"
TEST_FIELD_KEY_SETTINGS: dict[str, str] = {
    "data_keys": json.dumps(
        {k: _test_key(f"data {k}") for k in (TEST_DATA_KEY_ID, TEST_SECOND_DATA_KEY_ID)}
    ),
    "data_key_id": TEST_DATA_KEY_ID,
    "blind_index_key": _test_key("blind index"),
}


def fixed_field_keys(
    active_key_id: str = TEST_DATA_KEY_ID,
    key_ids: Sequence[str] = (TEST_DATA_KEY_ID, TEST_SECOND_DATA_KEY_ID),
) -> FieldKeys:
    """The tests' field keys, sealing new values under `active_key_id`, with only `key_ids` in
    the ring (a retired key left out)."""
    data_keys = json.loads(TEST_FIELD_KEY_SETTINGS["data_keys"])
    return FieldKeys.from_config(
        json.dumps({k: data_keys[k] for k in key_ids}),
        active_key_id,
        TEST_FIELD_KEY_SETTINGS["blind_index_key"],
    )


def field_key_environment() -> dict[str, str]:
    """The tests' field keys as the ZHIKE_* variables a process reads."""
    return {f"ZHIKE_{name.upper()}": value for name, value in TEST_FIELD_KEY_SETTINGS.items()}


DISPATCHER_ROLE = "notifications_dispatcher"
DISPATCHER_SUBJECT = "notifications"

# Fast retries so that failure paths finish in seconds, not minutes.
TEST_SETTINGS: dict[str, Any] = {
    "profile": "development",
    "auth_jwks_file": TEST_ISSUER.jwks_file,
    "auth_issuer": DEVELOPMENT_ISSUER,
    "auth_audience": DEVELOPMENT_AUDIENCE,
    "grpc_host": "127.0.0.1",
    "grpc_port": 0,
    "health_port": 0,
    "consumer_backoff_seconds": [0.2, 0.2, 0.2, 0.2],
    "consumer_max_deliver": 5,
    "consumer_ack_wait_seconds": 2.0,
    # Each service stop waits out its consumers' fetches in flight: at most 0.2 s, not 1.
    "consumer_fetch_wait_seconds": 0.2,
    "outbox_poll_seconds": 0.1,
    "health_check_interval_seconds": 0.2,
    "shutdown_grace_seconds": 5.0,
    # No Service endpoints to leave in a test: stop at once (test_rolling_update sets a delay).
    "lame_duck_seconds": 0.0,
    **TEST_FIELD_KEY_SETTINGS,
    # Notifications' own (other services ignore them): its webhook server on a free port, and
    # a token for its party directory, good for the longest test run.
    "webhook_port": 0,
    "webhook_host": "127.0.0.1",
    "service_token": TEST_ISSUER.mint(
        [DISPATCHER_ROLE], subject=DISPATCHER_SUBJECT, ttl_seconds=6 * 3600
    ),
    "dispatch_idle_seconds": 0.2,
}


def process_environment() -> dict[str, str]:
    """The ZHIKE_* variables a service started as a process needs to join the tests' platform
    (the counterpart of TEST_SETTINGS for in-process services)."""
    return (
        TEST_ISSUER.service_settings() | {"ZHIKE_PROFILE": "development"} | field_key_environment()
    )


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


async def answer_or_none(call: Awaitable[R]) -> R | None:
    """The RPC's answer, or None when it is NOT_FOUND: for polling what another service's
    events have not brought yet (a party's profile before identity's event reaches it)."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def wait_serving(port: int, timeout: float = 15.0) -> None:
    """Waits until the service is ready and connected to NATS, so that its events flow (a
    probe needs only the first: requests do not wait for the broker)."""

    async def serving() -> bool:
        try:
            return await readiness(port) == SERVING and await readiness(port, BROKER) == SERVING
        except grpc.aio.AioRpcError:  # not listening yet
            return False

    await eventually(serving, timeout=timeout, interval=0.1)


# Every default role but the customer's, which would need a party claim.
STAFF_ROLES = [role for role in DEFAULT_ROLES if role not in CUSTOMER_ROLES]


def authorised_channel(
    address: str,
    *,
    roles: Sequence[str] | None = None,
    party_id: str | None = None,
    subject: str = "test-user",
) -> grpc.aio.Channel:
    """A client channel to a service under test, carrying a bearer token for `roles` (every
    staff role by default) and, for a customer-delegated token, `party_id`.

    Use as `async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as ch:`.
    """
    token = TEST_ISSUER.mint(
        STAFF_ROLES if roles is None else roles, subject=subject, party_id=party_id
    )
    return grpc.aio.insecure_channel(address, interceptors=[BearerToken(token)])


# The notifications service's own role and subject when it asks identity and the profile
# (DEFAULT_ROLES: unmasked party reads, audited by identity).


def dispatcher_token(roles: Sequence[str] = (DISPATCHER_ROLE,)) -> str:
    """A token from the tests' issuer for notifications to call identity and the profile with
    (other `roles` to see it refused)."""
    return TEST_ISSUER.mint(roles, subject=DISPATCHER_SUBJECT)


def dispatcher_environment(
    identity_address: str, profile_address: str, token: str | None = None
) -> dict[str, str]:
    """The ZHIKE_* variables, beside `process_environment()`, that a notifications process
    needs to reach identity and the profile under test (a dispatcher token unless `token`)."""
    return {
        "ZHIKE_IDENTITY_ADDRESS": identity_address,
        "ZHIKE_PROFILE_ADDRESS": profile_address,
        "ZHIKE_SERVICE_TOKEN": dispatcher_token() if token is None else token,
    }


def migrate_databases(urls: Sequence[str], migrations: Path | None) -> None:
    """Brings each database to a service's newest schema (for tests that open stores on them)."""

    async def migrate() -> None:
        for url in urls:
            database = Database(url)
            try:
                await apply_migrations(database, migrations)
            finally:
                await database.dispose()

    asyncio.run(migrate())


async def schema_drift(
    database_url: str, migrations: Path | None, metadata: sa.MetaData
) -> list[Any]:
    """What a database migrated twice (the second run, another replica starting, finds nothing
    to do) differs in from a service's `metadata`, per Alembic's autogenerate comparison; the
    runtime's own tables (outbox, inbox, audit, versions) are left out. Empty: no drift."""

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_name": lambda name, kind, _parent: (
                    kind != "table" or name in metadata.tables
                ),
            },
        )
        return list(compare_metadata(context, metadata))

    database = Database(database_url)
    try:
        await apply_migrations(database, migrations)
        await apply_migrations(database, migrations)
        async with database.engine.connect() as connection:
            return await connection.run_sync(differences)
    finally:
        await database.dispose()
