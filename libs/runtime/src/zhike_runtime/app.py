"""Service lifecycle: composition, start-up, readiness, graceful shutdown, and the entry point.

A service describes itself with a `ServiceDefinition` (its name, settings type, migrations, the
stream it produces, and a `wire` function that builds its handlers from the `Platform`). The
runtime does the rest, the same way for all four services.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from nats.errors import Error as NatsError

from zhike_runtime.auth.access import AccessControl, load_roles
from zhike_runtime.auth.audit import AuditLog
from zhike_runtime.auth.permissions import METHOD_RULES, MethodRule
from zhike_runtime.auth.tokens import KeySet, TokenVerifier
from zhike_runtime.crypto import field_keys
from zhike_runtime.db import Database, database_for
from zhike_runtime.events.bus import EventBus, NatsAccess, StreamLimits, StreamSpec
from zhike_runtime.events.consumer import AfterCommitHook, ConsumerSpec, EventConsumer
from zhike_runtime.events.relay import AfterPublishHook, OutboxRelay
from zhike_runtime.grpc_server import HealthReporter, build_health_server, build_server
from zhike_runtime.logs import configure_logging
from zhike_runtime.migrations import MigrationError, apply_migrations, downgrade_migrations
from zhike_runtime.paging import PageTokens
from zhike_runtime.redaction import describe_error
from zhike_runtime.settings import ServiceSettings, load_settings
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.tls import allow_list_interceptors, certificate_files, server_credentials

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)

RELAY_TASK = "outbox-relay"
# How often the streams' fill is read for its gauge: a stream fills over hours, not seconds.
STREAM_FILL_SECONDS = 60.0


@dataclass
class Platform(Generic[S]):
    """What a service's composition root gets to build its handlers with."""

    name: str
    settings: S
    database: Database
    telemetry: Telemetry
    relay: OutboxRelay
    page_tokens: PageTokens
    # For a service that publishes outside its outbox (profile's IngestSourceEvents answers
    # only once JetStream has stored each event).
    bus: EventBus


@dataclass
class Wiring:
    """What a service's composition root gives back."""

    grpc_registrations: list[Callable[[grpc.aio.Server], None]] = field(default_factory=list)
    consumers: list[ConsumerSpec] = field(default_factory=list)
    # Loops that run while the service runs (profile: telling expired risk assessments); each
    # handles its own errors, and is cancelled at shutdown.
    background: dict[str, Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceDefinition(Generic[S]):
    name: str  # identity, profile, offers, notifications
    settings_type: type[S]
    grpc_service_names: tuple[str, ...]  # full names, e.g. zhike.identity.v1.IdentityService
    migrations: Path | None
    stream: StreamSpec | None
    wire: Callable[[Platform[S]], Wiring]
    # The platform's access table; only the runtime's own tests define other services.
    access_rules: Mapping[str, MethodRule] = field(default_factory=lambda: METHOD_RULES)
    # Streams the service owns besides its own events' (profile: ZHIKE_SOURCE, where the
    # banks' source adapters and its IngestSourceEvents publish the source systems' facts).
    extra_streams: tuple[StreamSpec, ...] = ()

    @property
    def streams(self) -> tuple[StreamSpec, ...]:
        """Every stream the service owns (and declares)."""
        own = (self.stream,) if self.stream is not None else ()
        return (*own, *self.extra_streams)


@dataclass(frozen=True)
class FaultHooks:
    """Crash-injection points for the reliability tests; empty in production."""

    after_publish: AfterPublishHook | None = None
    after_commit: AfterCommitHook | None = None


class RunningService(Generic[S]):
    """One service instance: its servers, relay, consumers and readiness loop."""

    def __init__(
        self,
        definition: ServiceDefinition[S],
        settings: S,
        telemetry: Telemetry | None = None,
        faults: FaultHooks | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.telemetry = telemetry or Telemetry(definition.name)
        self.database = database_for(settings)
        self.telemetry.instrument_database(self.database.engine)
        self.bus = EventBus(
            settings.nats_url,
            client_name=f"zhike-{definition.name}",
            access=NatsAccess.from_settings(settings, user=definition.name),
            stream_replicas=settings.stream_replicas,
            duplicate_window_seconds=settings.stream_duplicate_window_seconds,
            max_age_seconds=settings.stream_max_age_seconds,
            stream_limits=StreamLimits.from_settings(settings),
        )
        for stream in definition.streams:
            self.bus.add_stream(stream)
        self.relay = OutboxRelay(
            self.database,
            self.bus,
            self.telemetry,
            batch_size=settings.outbox_batch_size,
            poll_seconds=settings.outbox_poll_seconds,
            publish_timeout_seconds=settings.outbox_publish_timeout_seconds,
            retention_seconds=settings.outbox_retention_seconds,
            after_publish=faults.after_publish if faults else None,
        )
        self.platform = Platform(
            definition.name,
            settings,
            self.database,
            self.telemetry,
            self.relay,
            PageTokens(page_token_key(definition.name, settings)),
            self.bus,
        )
        wiring = definition.wire(self.platform)
        self._background = wiring.background
        self.consumers = [
            EventConsumer(
                spec,
                self.database,
                self.bus,
                self.telemetry,
                settings,
                on_commit=self.relay.notify,
                after_commit=faults.after_commit if faults else None,
            )
            for spec in wiring.consumers
        ]
        self.health = HealthReporter(definition.grpc_service_names)
        self.audit = AuditLog(self.database, dt.timedelta(days=settings.audit_retention_days))
        self.access = access_control(settings, self.audit, definition.access_rules)
        self.server = build_server(
            self.telemetry,
            self.health,
            wiring.grpc_registrations,
            definition.grpc_service_names,
            access=self.access,
            pre_interceptors=allow_list_interceptors(settings),
            max_message_bytes=settings.max_message_bytes,
            max_concurrent_rpcs=settings.max_concurrent_rpcs,
            deadline_cap_seconds=settings.max_rpc_seconds,
            enable_reflection=settings.grpc_reflection,
            max_public_calls=settings.max_public_calls,
        )
        self.health_server = (
            build_health_server(self.health) if settings.health_port is not None else None
        )
        self.grpc_port = 0
        self.health_port = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.settings.run_migrations:
            await apply_migrations(
                self.database,
                self.definition.migrations,
                field_keys(self.settings),
                lock_timeout_seconds=self.settings.migration_lock_timeout_seconds,
                statement_timeout_seconds=self.settings.migration_statement_timeout_seconds,
            )
        await self.health.start()
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        # TLS when configured: then the service port speaks nothing else; the health port
        # below stays plaintext for the kubelet's probes.
        tls_files = certificate_files(self.settings)
        if tls_files is None:
            self.grpc_port = self.server.add_insecure_port(address)
        else:
            self.grpc_port = self.server.add_secure_port(address, server_credentials(tls_files))
        await self.server.start()
        if self.health_server is not None:
            self.health_port = self.health_server.add_insecure_port(
                f"{self.settings.grpc_host}:{self.settings.health_port}"
            )
            await self.health_server.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.bus.run(), name="nats-connect"),
            loop.create_task(self.relay.run(), name=RELAY_TASK),
            loop.create_task(self._watch_dependencies(), name="readiness"),
            loop.create_task(self._watch_stream_fill(), name="stream-fill"),
            loop.create_task(self.audit.run_retention(), name="audit-retention"),
            *(loop.create_task(c.run(), name=f"consumer-{c.spec.durable}") for c in self.consumers),
            *(loop.create_task(run(), name=name) for name, run in self._background.items()),
        ]
        log.info(
            "service started",
            extra={
                "grpc_port": self.grpc_port,
                "health_port": self.health_port,
                "tls": tls_files is not None,
                "database": self.database.dialect,
            },
        )

    async def _watch_dependencies(self) -> None:
        # Readiness follows what a request needs: the database. A call never waits for NATS
        # (its events go to the outbox in its transaction and leave when the broker is back),
        # so a broker outage must not take every pod out of its Service; it is reported as
        # the zhike_nats_connected gauge (alerted on) and the health entry BROKER instead.
        while True:
            database_ok = await self.database.ping()
            broker_ok = self.bus.is_connected
            self.telemetry.gauges.nats_connected = broker_ok
            await self.health.update(database_ok, broker_connected=broker_ok)
            await asyncio.sleep(self.settings.health_check_interval_seconds)

    async def _watch_stream_fill(self) -> None:
        """Keeps the zhike_stream_fill_ratio gauge: how full the streams are, once they are
        declared and then every STREAM_FILL_SECONDS."""
        await self.bus.wait_ready()
        while True:
            # While the broker is away (its own gauge and alert tell that), and for a stream
            # JetStream does not tell (the bus logs it), the last figures stay.
            if self.bus.is_connected:
                try:
                    fill = await asyncio.wait_for(
                        self.bus.stream_fill(), timeout=STREAM_FILL_SECONDS / 2
                    )
                except (NatsError, ConnectionError, TimeoutError) as error:
                    log.debug("stream fill not read", extra={"error": describe_error(error)})
                else:
                    self.telemetry.gauges.stream_fill.update(fill)
            await asyncio.sleep(STREAM_FILL_SECONDS)

    async def stop(self) -> None:
        """Graceful: not ready at once, yet still answering for the lame-duck delay, then
        in-flight RPCs finish, the current event is settled, pending outbox rows get a last
        chance to go out, NATS is drained."""
        grace = self.settings.shutdown_grace_seconds
        await self.health.shutting_down()
        for consumer in self.consumers:
            consumer.stop()
        if self.settings.lame_duck_seconds > 0:
            # Kubernetes removes a terminating pod from the Service endpoints in parallel with
            # the SIGTERM, and callers and proxies learn of it a few seconds later: calls keep
            # arriving meanwhile, and stopping the server now would refuse them.
            log.info("lame duck", extra={"seconds": self.settings.lame_duck_seconds})
            await asyncio.sleep(self.settings.lame_duck_seconds)
        await self.server.stop(grace * 0.6)
        consumer_tasks = [t for t in self._tasks if t.get_name().startswith("consumer-")]
        if consumer_tasks:
            await asyncio.wait(consumer_tasks, timeout=grace * 0.2)
        # The relay ends after its current round rather than being cancelled in a query: a
        # cancellation inside asyncpg surfaces as "another operation is in progress", not as
        # CancelledError. Only then the last drain, so two rounds never run side by side.
        self.relay.stop()
        relay_task = [t for t in self._tasks if t.get_name() == RELAY_TASK]
        if relay_task:
            await asyncio.wait(relay_task, timeout=grace * 0.1)
        backlog = await self.relay.drain(deadline_seconds=grace * 0.1)
        if backlog:
            log.warning(
                "stopping with unsent events; the next start publishes them",
                extra={"backlog": backlog},
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await _settled(task)
        await self.bus.close()
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.database.dispose()
        self.telemetry.shutdown()
        log.info("service stopped")


async def _settled(task: asyncio.Task[Any]) -> None:
    """Waits for a cancelled background task. One that failed as it stopped (a database that is
    down, a query cut short) is logged, so the rest of the shutdown still runs."""
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # the stop itself is being cancelled
    except Exception as error:  # noqa: BLE001 - logged; stopping goes on
        log.warning(
            "background task failed as the service stopped",
            extra={"task": task.get_name(), "error": describe_error(error)},
        )


def page_token_key(service: str, settings: ServiceSettings) -> bytes | None:
    """ZHIKE_PAGE_TOKEN_KEY, else a key derived from the blind-index key (every replica holds
    it, so a next page may be served by any pod), else None: a random key per process."""
    if settings.page_token_key is not None:
        return settings.page_token_key.get_secret_value().encode()
    keys = field_keys(settings)
    if keys is not None:
        return keys.blind_index.signing_key(f"{service}.page_tokens")
    log.warning(
        "neither ZHIKE_PAGE_TOKEN_KEY nor the field keys are set: page tokens work on this "
        "replica only"
    )
    return None


def access_control(
    settings: ServiceSettings, audit: AuditLog, rules: Mapping[str, MethodRule]
) -> AccessControl:
    keys = KeySet(
        file=settings.auth_jwks_file,
        url=settings.auth_jwks_url,
        refresh_seconds=settings.auth_jwks_refresh_seconds,
    )
    verifier = TokenVerifier(
        keys,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        algorithms=tuple(settings.auth_algorithms),
        leeway_seconds=settings.auth_leeway_seconds,
    )
    return AccessControl(
        verifier,
        load_roles(settings.auth_roles_file),
        audit,
        rules=rules,
        roles_claim=settings.auth_roles_claim,
        party_claim=settings.auth_party_claim,
        customer_roles=frozenset(settings.auth_customer_roles),
    )


GC_YOUNG_THRESHOLD = 50_000


def settle_memory() -> None:
    """Keeps what start-up built (modules, the model, tables, the pools: ~300,000 objects)
    out of every later full garbage collection. Python's collector walks all tracked objects on
    each full pass, and these live as long as the process; left in, each pass cost tens of
    milliseconds of a request's time. Collected first, so no garbage is frozen with them.

    The young generation is collected every 50,000 allocations instead of Python's 700: a
    consumer batch or a decision builds some 10^5 short-lived objects (rows, facts,
    assessments), and at the default the collector walked them every few hundred allocations,
    about a tenth of the profile's ingestion CPU."""
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)


async def _serve(definition: ServiceDefinition[S], settings: S) -> None:
    service = RunningService(definition, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await service.start()
    settle_memory()
    await stop.wait()
    log.info("shutdown requested")
    try:
        await asyncio.wait_for(
            service.stop(), timeout=settings.lame_duck_seconds + settings.shutdown_grace_seconds
        )
    except TimeoutError:
        log.error("shutdown exceeded the grace period; exiting anyway")


async def _migrate(
    definition: ServiceDefinition[S], settings: S, down_to: Sequence[str] = ()
) -> None:
    database = database_for(settings)
    lock_timeout = settings.migration_lock_timeout_seconds
    statement_timeout = settings.migration_statement_timeout_seconds
    undone: list[str] = []
    try:
        if down_to:
            undone = await downgrade_migrations(
                database,
                definition.migrations,
                down_to,
                field_keys(settings),
                lock_timeout_seconds=lock_timeout,
                statement_timeout_seconds=statement_timeout,
            )
        else:
            await apply_migrations(
                database,
                definition.migrations,
                field_keys(settings),
                lock_timeout_seconds=lock_timeout,
                statement_timeout_seconds=statement_timeout,
            )
    finally:
        await database.dispose()
    if not down_to:
        log.info("migrations applied")
    elif undone:
        log.info("migrations undone: %s (now at %s)", ", ".join(undone), ", ".join(down_to))
    else:
        log.info("nothing to undo: already at %s", ", ".join(down_to))


def run(definition: ServiceDefinition[S], argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m zhike_<service> [serve|migrate [--down-to REVISION]...]`."""
    parser = argparse.ArgumentParser(prog=f"zhike_{definition.name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    parser.add_argument(
        "--down-to",
        action="append",
        default=[],
        metavar="REVISION",
        help=(
            "with migrate: undo the migrations applied after REVISION (the service's, e.g. "
            f"{definition.name}_0003, or the runtime's, e.g. runtime_0002; give one of each to "
            "take both down), before rolling back to a release that ends there"
        ),
    )
    args = parser.parse_args(argv)
    if args.down_to and args.command != "migrate":
        parser.error("--down-to goes with migrate")
    settings = load_settings(definition.settings_type)
    configure_logging(definition.name, settings.log_level)
    if args.command == "migrate":
        try:
            asyncio.run(_migrate(definition, settings, args.down_to))
        except MigrationError as error:
            # Its message says what stopped it and what to do; nothing was changed.
            log.error("%s", error)
            raise SystemExit(1) from None
    else:
        asyncio.run(_serve(definition, settings))
