"""The NATS connection: reconnects forever, declares streams and consumers idempotently.

The service starts serving even when NATS is not there yet (readiness needs only the database:
events wait in the outbox, and `zhike_nats_connected` reports the broker); `run` keeps trying to
connect, and (re)declares the streams after every (re)connect, so a broker that
comes back with an empty store gets its streams again. One declaration runs at a time, retrying
further and further apart while JetStream refuses, however often the connection comes back.

Every stream holds at most its byte limit (`StreamLimits`) and refuses new events once there
(DiscardPolicy.NEW), so one stream filling up cannot fill the server's JetStream store and stop
every other stream with it; a refused publish raises `StreamFull`, naming the stream.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from nats.js.errors import Error as JetStreamError

from zhike_runtime.events.pull import PullConsumer
from zhike_runtime.redaction import describe_error
from zhike_runtime.settings import NatsSettings

log = logging.getLogger(__name__)

DLQ_STREAM = "ZHIKE_DLQ"
DLQ_SUBJECT_PREFIX = "zhike.dlq"

MIB = 1024 * 1024
# JetStream's error codes: a stream store refused a message (with "maximum bytes exceeded" when
# the stream is at its max_bytes), and a server's store cannot reserve a stream's max_bytes.
STREAM_STORE_FAILED = 10077
STORAGE_RESOURCES_EXCEEDED = 10047
# A declaration JetStream refuses is tried again after 1 s, then 2, 4, 8, then every 10 s; a
# failure that lasts is reported at once and then once a minute.
_DECLARE_RETRY_FIRST_SECONDS = 1.0
_DECLARE_RETRY_MAX_SECONDS = 10.0
_DECLARE_REPORT_EVERY_SECONDS = 60.0
# A stream holding this share of its limit is reported when it is declared.
_NEARLY_FULL = 0.9


@dataclass(frozen=True)
class StreamSpec:
    """A stream owned by one producing service, e.g. ZHIKE_IDENTITY over zhike.identity.v1.>."""

    name: str
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class ConsumerDeclaration:
    durable: str  # <consumer>-<producer>, e.g. profile-identity
    stream: str
    filter_subjects: tuple[str, ...]
    ack_wait_seconds: float


def dlq_subject(durable: str) -> str:
    return f"{DLQ_SUBJECT_PREFIX}.{durable}"


def subject_matches(subject: str, pattern: str) -> bool:
    """Whether `subject` is one of `pattern`'s (NATS wildcards: `*` one token, `>` the rest)."""
    tokens = subject.split(".")
    for index, wanted in enumerate(pattern.split(".")):
        if wanted == ">":
            return len(tokens) > index
        if index >= len(tokens) or wanted not in ("*", tokens[index]):
            return False
    return len(tokens) == len(pattern.split("."))


def mib(size: int) -> str:
    """`size` bytes in MiB, for messages (a digit run of 6 or more is masked in logs)."""
    return f"{size / MIB:g} MiB"


@dataclass(frozen=True)
class StreamLimits:
    """The most bytes each stream may hold: `by_stream` for the streams named there, `max_bytes`
    for the others. None: no limit (the runtime's own tests)."""

    max_bytes: int | None = None
    by_stream: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: NatsSettings) -> StreamLimits:
        return cls(settings.stream_max_bytes, dict(settings.stream_max_bytes_by_stream))

    def for_stream(self, name: str) -> int | None:
        return self.by_stream.get(name, self.max_bytes)


class StreamFull(ServiceUnavailableError):
    """JetStream refused a message: its stream holds its byte limit. The stream keeps every event
    it has and takes new ones again once max_age has removed old ones or its limit is raised;
    a JetStream error like any other to the callers (the relay keeps the event in the outbox,
    IngestSourceEvents answers UNAVAILABLE)."""

    def __init__(
        self, cause: APIError, subject: str, stream: str | None, limit: int | None
    ) -> None:
        super().__init__(
            code=cause.code, description=cause.description, err_code=cause.err_code, stream=stream
        )
        self.subject = subject
        self.limit = limit

    def __str__(self) -> str:
        which = f"stream {self.stream}" if self.stream else f"the stream of {self.subject}"
        limit = f" of {mib(self.limit)}" if self.limit else ""
        return (
            f"{which} is full: it holds its byte limit{limit}, and takes new events once "
            "max_age removes old ones or the limit is raised (ZHIKE_STREAM_MAX_BYTES, "
            "ZHIKE_STREAM_MAX_BYTES_BY_STREAM)"
        )


def _is_stream_full(error: APIError) -> bool:
    return error.err_code == STREAM_STORE_FAILED and "maximum bytes" in (error.description or "")


class StreamNotDeclared(Exception):
    """JetStream answered a stream's declaration with an error (e.g. its server's store cannot
    reserve the stream's byte limit). The reason is spelled out here: the logs mask quoted text,
    and nats-py quotes the server's description."""

    def __init__(self, config: StreamConfig, cause: APIError) -> None:
        limit = config.max_bytes
        sized = f" with max_bytes {mib(limit)}" if limit is not None and limit > 0 else ""
        hint = (
            ": the byte limits of all streams must fit in the JetStream store of each server "
            "(docs/operations.md, Stream sizing)"
            if cause.err_code == STORAGE_RESOURCES_EXCEEDED
            else ""
        )
        super().__init__(
            f"stream {config.name}{sized} not declared: {cause.description} "
            f"(code {cause.code}, err_code {cause.err_code}){hint}"
        )


class PayloadTooLarge(Exception):
    """A message larger than the server's max_payload. It is never sent: the server would refuse
    it and close the connection of the client that sent it, failing every publish in flight."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds the NATS max_payload of {limit} bytes")


def message_size(payload: bytes, headers: Mapping[str, str] | None) -> int:
    """What the server counts against max_payload: the payload and the encoded header block
    (`NATS/1.0`, then `Key: value` lines, each ending in CRLF, then an empty line)."""
    if not headers:
        return len(payload)
    header_block = len(b"NATS/1.0\r\n\r\n") + sum(
        len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items()
    )
    return header_block + len(payload)


INBOX_PREFIX = "_INBOX"


def inbox_prefix(user: str) -> str:
    """Where the answers to a user's requests arrive (JetStream API replies, the messages its
    pulls fetch): _INBOX.<user>.>, so that NATS permissions can give each user its own replies
    only (events/nats_permissions.py)."""
    return f"{INBOX_PREFIX}.{user}"


@dataclass(frozen=True)
class NatsAccess:
    """Who a client is to NATS and how its connection is protected."""

    inbox_prefix: str = INBOX_PREFIX
    creds_file: Path | None = None
    nkey_seed_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_handshake_first: bool = False

    @classmethod
    def from_settings(cls, settings: NatsSettings, user: str) -> NatsAccess:
        return cls(
            inbox_prefix=inbox_prefix(user),
            creds_file=settings.nats_creds_file,
            nkey_seed_file=settings.nats_nkey_seed_file,
            tls_ca_file=settings.nats_tls_ca_file,
            tls_cert_file=settings.nats_tls_cert_file,
            tls_key_file=settings.nats_tls_key_file,
            tls_handshake_first=settings.nats_tls_handshake_first,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """None unless a CA or a client certificate is configured; a tls:// URL without either
        then verifies the servers against the system's CAs (nats-py's default context)."""
        if self.tls_ca_file is None and self.tls_cert_file is None:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(self.tls_ca_file) if self.tls_ca_file is not None else None,
        )
        if self.tls_cert_file is not None:
            context.load_cert_chain(
                self.tls_cert_file,
                self.tls_key_file if self.tls_key_file is not None else None,
            )
        return context

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of nats.connect for this identity and protection."""
        options: dict[str, Any] = {
            "inbox_prefix": self.inbox_prefix,
            "tls_handshake_first": self.tls_handshake_first,
        }
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        if self.nkey_seed_file is not None:
            # nats-py re-reads the seed file to sign each connection's nonce and wipes the
            # key from memory afterwards, so the seed is not held for the process's life.
            options["nkeys_seed"] = str(self.nkey_seed_file)
        context = self.tls_context()
        if context is not None:
            options["tls"] = context
        return options


async def connect_to_nats(url: str, name: str, access: NatsAccess, **options: Any) -> Client:
    """Connects to one of the comma-separated `url`s as `access` says (the services' bus and
    the `zhike dlq` command connect the same way)."""
    return await nats.connect(
        servers=[u.strip() for u in url.split(",")],
        name=name,
        **access.connect_options(),
        **options,
    )


class EventBus:
    def __init__(
        self,
        url: str,
        client_name: str,
        *,
        access: NatsAccess | None = None,
        stream_replicas: int = 1,
        duplicate_window_seconds: float = 120.0,
        max_age_seconds: float | None = None,
        stream_limits: StreamLimits | None = None,
    ) -> None:
        self._url = url
        self._client_name = client_name
        self._access = access or NatsAccess()
        self._replicas = stream_replicas
        self._duplicate_window = duplicate_window_seconds
        # Events carry personal data (a name in GoldenRecordChanged): a stream, dead letters
        # included, keeps them no longer than this (None: forever, for the runtime's own tests).
        self._max_age = max_age_seconds
        self._limits = stream_limits or StreamLimits()
        self._streams: list[StreamSpec] = []
        self._consumers: list[ConsumerDeclaration] = []
        self._nc: Client | None = None
        self._ready = asyncio.Event()
        self._declared = False
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        # The one task declaring the streams, and the connections it must declare on: each
        # (re)connect adds one, and the task ends only after a declaration that began after it.
        self._declaring: asyncio.Task[None] | None = None
        self._connections = 0
        # Durables waiting for their producer's stream, by name (added when it appears).
        self._pending_consumers: dict[str, asyncio.Task[None]] = {}

    def add_stream(self, spec: StreamSpec) -> None:
        self._streams.append(spec)

    def add_consumer(self, declaration: ConsumerDeclaration) -> None:
        self._consumers.append(declaration)

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected and self._declared

    @property
    def js(self) -> JetStreamContext:
        if self._nc is None:
            raise ConnectionError("not connected to NATS")
        return self._nc.jetstream()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def stream_fill(self) -> dict[str, float]:
        """How full each stream this service declares is (the dead-letter stream too): the bytes
        it holds over its byte limit. At 1 it refuses new events. Streams without a limit, and
        those JetStream did not tell (logged), are left out."""
        fill: dict[str, float] = {}
        for name in [*(spec.name for spec in self._streams), DLQ_STREAM]:
            try:
                info = await self.js.stream_info(name)
            except (NatsError, JetStreamError, TimeoutError) as error:
                # E.g. the NATS user lacks STREAM.INFO on it (docs/operations.md): the other
                # streams are still read.
                log.warning(
                    "stream fill not read",
                    extra={"stream": name, "error": describe_error(error)},
                )
                continue
            limit = info.config.max_bytes
            if limit is not None and limit > 0:
                fill[name] = (info.state.bytes or 0) / limit
        return fill

    async def pull(self, stream: str, durable: str) -> PullConsumer:
        """Fetches from the durable pull consumer `durable` of `stream` (close it when done)."""
        if self._nc is None:
            raise ConnectionError("not connected to NATS")
        consumer = PullConsumer(self._nc, stream, durable)
        await consumer.start()
        return consumer

    def awaits_stream(self, durable: str) -> bool:
        """True while `durable` waits for its producer's stream to appear (not added yet)."""
        return durable in self._pending_consumers

    @property
    def max_payload(self) -> int | None:
        """The largest message the connected server accepts (None before the first connect)."""
        return self._nc.max_payload if self._nc is not None else None

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str],
        timeout: float | None = None,
    ) -> PubAck:
        """Publishes to JetStream and returns its ack; raises PayloadTooLarge, without sending,
        for a message the server would refuse, and StreamFull when the stream holds its byte
        limit."""
        limit = self.max_payload
        size = message_size(payload, headers)
        if limit is not None and size > limit:
            raise PayloadTooLarge(size, limit)
        try:
            return await self.js.publish(subject, payload, timeout=timeout, headers=headers)
        except APIError as error:
            if not _is_stream_full(error):
                raise
            stream = self._stream_of(subject)
            max_bytes = self._limits.for_stream(stream) if stream is not None else None
            raise StreamFull(error, subject, stream, max_bytes) from error

    def _stream_of(self, subject: str) -> str | None:
        """The stream of ours (the dead letters included) that takes `subject`."""
        owned = [*self._streams, StreamSpec(DLQ_STREAM, (f"{DLQ_SUBJECT_PREFIX}.>",))]
        for spec in owned:
            if any(subject_matches(subject, pattern) for pattern in spec.subjects):
                return spec.name
        return None

    async def run(self) -> None:
        """Connects (retrying until it succeeds) and declares everything; returns when ready."""
        delay = 0.2
        while self._nc is None and not self._stopping:
            try:
                self._nc = await connect_to_nats(
                    self._url,
                    self._client_name,
                    self._access,
                    connect_timeout=2,
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
            except (NatsError, OSError, TimeoutError) as error:
                log.warning("NATS not reachable yet", extra={"error": describe_error(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self._nc is not None:
            # Waited for, not awaited: close() cancels it, and that is no error of ours.
            await asyncio.wait({self._declare_on_new_connection()})

    def _declare_on_new_connection(self) -> asyncio.Task[None]:
        """Has the streams declared on the connection just made: by the declaring task if one
        runs (it declares once more before it ends), else by a new one."""
        self._declared = False
        self._connections += 1
        if self._declaring is None or self._declaring.done():
            task = asyncio.get_running_loop().create_task(
                self._declare_until_done(), name="nats-declare"
            )
            self._declaring = task
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return self._declaring

    async def _declare_until_done(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _DECLARE_RETRY_FIRST_SECONDS
        failures = 0
        reported_at = 0.0
        while not self._stopping:
            connection = self._connections
            try:
                await self._declare()
            except (NatsError, JetStreamError, OSError, TimeoutError, StreamNotDeclared) as error:
                failures += 1
                if failures == 1 or loop.time() - reported_at >= _DECLARE_REPORT_EVERY_SECONDS:
                    reported_at = loop.time()
                    # Refused by the server (a limit its store cannot hold): the operator must
                    # act. Otherwise JetStream is not there (yet): it comes back by itself.
                    refused = isinstance(error, StreamNotDeclared)
                    log.log(
                        logging.ERROR if refused else logging.WARNING,
                        "declaring streams failed; retrying",
                        extra={
                            "error": describe_error(error),
                            "attempts": failures,
                            "retry_in_seconds": delay,
                        },
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _DECLARE_RETRY_MAX_SECONDS)
                continue
            if connection != self._connections:
                continue  # reconnected meanwhile, maybe to a server without our streams
            if failures:
                log.info("streams declared", extra={"attempts": failures + 1})
            self._declared = True
            self._ready.set()
            return

    def _stream_config(self, name: str, subjects: list[str]) -> StreamConfig:
        limit = self._limits.for_stream(name)
        return StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            num_replicas=self._replicas,
            duplicate_window=self._duplicate_window,
            max_age=self._max_age,
            max_bytes=limit if limit is not None else -1,
            # At its limit a stream refuses new events and keeps the ones it has: dropping the
            # oldest (DiscardPolicy.OLD) would lose acknowledged events not yet consumed.
            discard=DiscardPolicy.NEW,
        )

    async def _declare(self) -> None:
        js = self.js
        configs = [self._stream_config(spec.name, list(spec.subjects)) for spec in self._streams]
        # Every service declares the dead-letter stream with the same settings.
        configs.append(self._stream_config(DLQ_STREAM, [f"{DLQ_SUBJECT_PREFIX}.>"]))
        for config in configs:
            info = await self._declare_stream(js, config)
            self._report_fill(info)
        for consumer in self._consumers:
            if await self._stream_exists(consumer.stream):
                await self._add_consumer(consumer)
            else:
                self._add_consumer_later(consumer)

    async def _declare_stream(self, js: JetStreamContext, config: StreamConfig) -> StreamInfo:
        try:
            return await js.add_stream(config)
        except APIError as error:
            if error.err_code is None:
                raise  # JetStream did not answer (not enabled, or not up yet)
            refused = error
        # Already there with other settings (an earlier release's, or an operator's): updated,
        # a byte limit included. A limit below what the stream holds removes nothing (discard
        # new): the stream refuses new events until max_age has made room.
        log.info(
            "updating stream", extra={"stream": config.name, "reason": describe_error(refused)}
        )
        try:
            return await js.update_stream(config)
        except NotFoundError as error:
            # Not there: the reason is the one its creation was refused for.
            raise StreamNotDeclared(config, refused) from error
        except APIError as error:
            if error.err_code is None:
                raise
            raise StreamNotDeclared(config, error) from error

    def _report_fill(self, info: StreamInfo) -> None:
        """Logs a stream that holds (nearly) its byte limit as it is declared: after an upgrade
        sets a limit below what the stream holds, it refuses every new event at once."""
        limit = info.config.max_bytes
        held = info.state.bytes
        if limit is None or limit <= 0 or held < limit * _NEARLY_FULL:
            return
        full = held >= limit
        log.log(
            logging.ERROR if full else logging.WARNING,
            "stream at or over its byte limit: it refuses new events"
            if full
            else "stream nearly at its byte limit",
            extra={
                "stream": info.config.name,
                "held_mib": round(held / MIB, 1),
                "max_bytes_mib": round(limit / MIB, 1),
            },
        )

    async def _add_consumer(self, consumer: ConsumerDeclaration) -> None:
        await self.js.add_consumer(
            consumer.stream,
            ConsumerConfig(
                name=consumer.durable,
                durable_name=consumer.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                # Unlimited: the consumer counts deliveries and dead-letters an event itself
                # (`consumer_max_deliver`). With a limit here too, JetStream would drop an event
                # whose last delivery could not be parked (the dead-letter publish failed) or
                # that failed only because the database was down.
                max_deliver=-1,
                ack_wait=consumer.ack_wait_seconds,
                filter_subjects=list(consumer.filter_subjects),
                max_ack_pending=1000,
            ),
        )

    async def _stream_exists(self, stream: str) -> bool:
        try:
            await self.js.stream_info(stream)
        except NotFoundError:
            return False
        return True

    def _add_consumer_later(self, consumer: ConsumerDeclaration) -> None:
        """A consumer's stream belongs to its producer, which may start later than we do. The
        service does not wait for it (two services consuming each other's streams would each
        wait for the other to be ready): the durable is added once the stream exists, and its
        consumer does not fetch until then (`awaits_stream`). Nothing is missed: a new durable
        starts at the stream's first event."""
        if consumer.durable in self._pending_consumers:
            return

        async def add_when_there() -> None:
            said = False
            while not self._stopping:
                try:
                    if await self._stream_exists(consumer.stream):
                        await self._add_consumer(consumer)
                        self._pending_consumers.pop(consumer.durable, None)  # fetching may start
                        return
                    if not said:  # once: a producer deployed later is not a fault
                        log.info("waiting for stream", extra={"stream": consumer.stream})
                        said = True
                except (NatsError, JetStreamError, OSError, TimeoutError) as error:
                    log.warning(
                        "adding a consumer failed; retrying",
                        extra={"consumer": consumer.durable, "error": describe_error(error)},
                    )
                await asyncio.sleep(1.0)

        task = asyncio.get_running_loop().create_task(add_when_there())
        self._pending_consumers[consumer.durable] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self._pending_consumers.pop(consumer.durable, None))

    async def _on_disconnected(self) -> None:
        log.warning("NATS disconnected")

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected")
        # The broker may have come back without our streams (a fresh store): declare again.
        self._declare_on_new_connection()

    async def _on_error(self, error: Exception) -> None:
        log.warning("NATS error", extra={"error": describe_error(error)})

    async def close(self) -> None:
        """Drains subscriptions and pending publishes, then closes the connection."""
        self._stopping = True
        for task in list(self._background):  # durables still waiting for their stream
            task.cancel()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5)
            except (NatsError, TimeoutError) as error:
                log.warning("NATS drain did not finish", extra={"error": describe_error(error)})
                await self._nc.close()
