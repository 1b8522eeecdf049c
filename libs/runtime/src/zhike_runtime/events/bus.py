"""The NATS connection: reconnects forever, declares streams and consumers idempotently.

The service starts serving (with readiness NOT_SERVING) even when NATS is not there yet; `run`
keeps trying to connect, and (re)declares the streams after every (re)connect, so a broker that
comes back with an empty store gets its streams again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import Error as JetStreamError

log = logging.getLogger(__name__)

DLQ_STREAM = "ZHIKE_DLQ"
DLQ_SUBJECT_PREFIX = "zhike.dlq"


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
    max_deliver: int
    ack_wait_seconds: float


def dlq_subject(durable: str) -> str:
    return f"{DLQ_SUBJECT_PREFIX}.{durable}"


class EventBus:
    def __init__(
        self,
        url: str,
        client_name: str,
        *,
        creds_file: str | None = None,
        stream_replicas: int = 1,
        duplicate_window_seconds: float = 120.0,
    ) -> None:
        self._servers = [u.strip() for u in url.split(",")]
        self._client_name = client_name
        self._creds_file = creds_file
        self._replicas = stream_replicas
        self._duplicate_window = duplicate_window_seconds
        self._streams: list[StreamSpec] = []
        self._consumers: list[ConsumerDeclaration] = []
        self._nc: Client | None = None
        self._ready = asyncio.Event()
        self._declared = False
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()

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

    async def run(self) -> None:
        """Connects (retrying until it succeeds) and declares everything; returns when ready."""
        delay = 0.2
        while self._nc is None and not self._stopping:
            try:
                self._nc = await nats.connect(
                    servers=self._servers,
                    name=self._client_name,
                    user_credentials=self._creds_file,
                    connect_timeout=2,
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
            except (NatsError, OSError, TimeoutError) as error:
                log.warning("NATS not reachable yet", extra={"error": str(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        await self._declare_until_done()

    async def _declare_until_done(self) -> None:
        while not self._stopping:
            try:
                await self._declare()
            except (NatsError, JetStreamError, OSError, TimeoutError) as error:
                log.warning("declaring streams failed; retrying", extra={"error": repr(error)})
                await asyncio.sleep(1.0)
                continue
            self._declared = True
            self._ready.set()
            return

    async def _declare(self) -> None:
        js = self.js
        configs = [
            StreamConfig(
                name=spec.name,
                subjects=list(spec.subjects),
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                num_replicas=self._replicas,
                duplicate_window=self._duplicate_window,
                discard=DiscardPolicy.OLD,
            )
            for spec in self._streams
        ]
        # Every service declares the dead-letter stream with the same settings.
        configs.append(
            StreamConfig(
                name=DLQ_STREAM,
                subjects=[f"{DLQ_SUBJECT_PREFIX}.>"],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                num_replicas=self._replicas,
                duplicate_window=self._duplicate_window,
            )
        )
        for config in configs:
            try:
                await js.add_stream(config)
            except JetStreamError as error:
                # Already there with other settings (an operator changed them, or we did): update.
                log.info("updating stream", extra={"stream": config.name, "reason": str(error)})
                await js.update_stream(config)
        for consumer in self._consumers:
            await self._wait_for_stream(consumer.stream)
            await js.add_consumer(
                consumer.stream,
                ConsumerConfig(
                    name=consumer.durable,
                    durable_name=consumer.durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    max_deliver=consumer.max_deliver,
                    ack_wait=consumer.ack_wait_seconds,
                    filter_subjects=list(consumer.filter_subjects),
                    max_ack_pending=1000,
                ),
            )

    async def _wait_for_stream(self, stream: str) -> None:
        """A consumer's stream belongs to its producer, which may start later than we do."""
        while not self._stopping:
            try:
                await self.js.stream_info(stream)
                return
            except JetStreamError:
                log.info("waiting for stream", extra={"stream": stream})
                await asyncio.sleep(1.0)

    async def _on_disconnected(self) -> None:
        log.warning("NATS disconnected")

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected")
        # The broker may have come back without our streams (a fresh store): declare again.
        self._declared = False
        task = asyncio.get_running_loop().create_task(self._declare_until_done())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _on_error(self, error: Exception) -> None:
        log.warning("NATS error", extra={"error": repr(error)})

    async def close(self) -> None:
        """Drains subscriptions and pending publishes, then closes the connection."""
        self._stopping = True
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5)
            except (NatsError, TimeoutError) as error:
                log.warning("NATS drain did not finish", extra={"error": repr(error)})
                await self._nc.close()
