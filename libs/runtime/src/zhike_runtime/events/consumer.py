"""Idempotent event consumers on durable JetStream pull consumers.

For each message: the event id goes into the inbox table in the same transaction as the handler's
effect; a redelivered event finds its id there and changes nothing. Acks are explicit and sent only
after the commit. A failing event is NAKed with a growing delay (JetStream's BackOff does not apply
to NAKs, so the delay is passed explicitly); after `max_deliver` attempts, or at once for an event
that can never succeed, it goes to the dead-letter stream with its subject and last error, and is
terminated so the events behind it keep flowing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_runtime.db import DISCONNECT_ERRORS, Database, insert_for
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import ConsumerDeclaration, EventBus, PayloadTooLarge, dlq_subject
from zhike_runtime.events.schema import inbox_event
from zhike_runtime.redaction import describe_error
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry, extract_context

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


class PermanentEventError(Exception):
    """The event can never be applied (malformed, violates an invariant): dead-letter it now."""


@dataclass(frozen=True)
class EventContext:
    event_id: str
    event_type: str
    subject: str
    delivery: int


@dataclass(frozen=True)
class EventHandler(Generic[M]):
    """Applies one event type inside the consumer's transaction (the session is already begun)."""

    message_type: type[M]
    handle: Callable[[AsyncSession, M, EventContext], Awaitable[None]]

    @property
    def event_type(self) -> str:
        return self.message_type.DESCRIPTOR.full_name


@dataclass(frozen=True)
class ConsumerSpec:
    durable: str  # <consumer>-<producer>
    stream: str
    filter_subjects: tuple[str, ...]
    handlers: tuple[EventHandler[Any], ...]


# Test seam for crash scenarios: awaited after the effect committed and before the ack.
AfterCommitHook = Callable[[EventContext], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        spec: ConsumerSpec,
        database: Database,
        bus: EventBus,
        telemetry: Telemetry,
        settings: ServiceSettings,
        *,
        after_commit: AfterCommitHook | None = None,
    ) -> None:
        self.spec = spec
        self._db = database
        self._bus = bus
        self._telemetry = telemetry
        self._settings = settings
        self._handlers: Mapping[str, EventHandler[Any]] = {
            handler.event_type: handler for handler in spec.handlers
        }
        self._after_commit = after_commit
        self._stopping = False
        # Counts for this instance (the metrics carry the same, labelled by consumer).
        self.applied = 0
        self.duplicates = 0
        self.dead_lettered = 0
        # The series exist from the start at 0: a counter first seen at 1 shows no increase()
        # to Prometheus, and the first dead letter would not alert.
        for counter in (
            telemetry.events_applied,
            telemetry.events_duplicate,
            telemetry.events_dead_lettered,
        ):
            counter.add(0, {"consumer": spec.durable})
        bus.add_consumer(
            ConsumerDeclaration(
                durable=spec.durable,
                stream=spec.stream,
                filter_subjects=spec.filter_subjects,
                max_deliver=settings.consumer_max_deliver,
                ack_wait_seconds=settings.consumer_ack_wait_seconds,
            )
        )

    def stop(self) -> None:
        """Finishes the message in hand (applied and acked, or NAKed), then returns from run()."""
        self._stopping = True

    async def run(self) -> None:
        await self._bus.wait_ready()
        subscription: JetStreamContext.PullSubscription | None = None
        loop = asyncio.get_running_loop()
        last_lag_check = 0.0
        while not self._stopping:
            try:
                if subscription is None:
                    subscription = await self._bus.js.pull_subscribe_bind(
                        durable=self.spec.durable, stream=self.spec.stream
                    )
                messages = await subscription.fetch(self._settings.consumer_batch_size, timeout=1)
            except NatsTimeoutError:
                messages = []
            except (NatsError, JetStreamError, OSError) as error:
                log.warning(
                    "fetch failed; retrying",
                    extra={"consumer": self.spec.durable, "error": describe_error(error)},
                )
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                if self._stopping:
                    # Not started: hand it back for another replica (or our next start) at once.
                    await _settle(message.nak())
                    continue
                await self._process(message)
            if subscription is not None and loop.time() - last_lag_check > 5.0:
                last_lag_check = loop.time()
                await self._record_lag(subscription)
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except (NatsError, JetStreamError) as error:
                log.info("unsubscribe failed", extra={"error": describe_error(error)})

    async def _process(self, message: Msg) -> None:
        headers = message.headers or {}
        event_id = headers.get(h.EVENT_ID) or headers.get(h.MSG_ID) or ""
        event_type = headers.get(h.EVENT_TYPE, "")
        delivery = message.metadata.num_delivered or 1
        context = EventContext(event_id, event_type, message.subject, delivery)
        tracer = self._telemetry.tracer
        with tracer.start_as_current_span(
            f"consume {event_type or message.subject}",
            context=extract_context(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": message.subject,
                "messaging.consumer.group.name": self.spec.durable,
                "messaging.message.id": event_id,
            },
        ) as span:
            handler = self._handlers.get(event_type)
            if handler is None:
                # Another consumer's event type on a shared subject filter: nothing to do here.
                await _settle(message.ack())
                return
            try:
                if not event_id:
                    raise PermanentEventError("message has no event id header")
                try:
                    payload = handler.message_type.FromString(message.data)
                except DecodeError as error:
                    raise PermanentEventError(f"payload is not a {event_type}: {error}") from error
                applied = await self._apply(handler, payload, context)
            except PermanentEventError as error:
                span.set_status(Status(StatusCode.ERROR, describe_error(error)))
                await self._dead_letter(message, context, error)
                return
            except Exception as error:  # noqa: BLE001 - any failure is retried, then dead-lettered
                span.set_status(Status(StatusCode.ERROR, describe_error(error)))
                await self._retry_or_dead_letter(message, context, error)
                return
            if self._after_commit is not None:
                await self._after_commit(context)
            await _settle(message.ack())
            if applied:
                self.applied += 1
                self._telemetry.events_applied.add(1, {"consumer": self.spec.durable})
                log.info(
                    "event applied",
                    extra={
                        "consumer": self.spec.durable,
                        "event_id": event_id,
                        "event_type": event_type,
                    },
                )
            else:
                self.duplicates += 1
                self._telemetry.events_duplicate.add(1, {"consumer": self.spec.durable})
                log.info(
                    "duplicate event absorbed",
                    extra={"consumer": self.spec.durable, "event_id": event_id},
                )

    async def _apply(
        self, handler: EventHandler[Any], payload: Message, context: EventContext
    ) -> bool:
        """Records the event id and applies the effect in one transaction; False if seen before."""
        async with self._db.session() as session, session.begin():
            row = {
                "consumer": self.spec.durable,
                "event_id": context.event_id,
                "event_type": context.event_type,
                "processed_at": dt.datetime.now(dt.UTC),
            }
            statement = (
                insert_for(self._db.dialect, inbox_event).values(row).on_conflict_do_nothing()
            )
            result = await session.execute(statement)
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return False
            await handler.handle(session, payload, context)
        return True

    async def _retry_or_dead_letter(
        self, message: Msg, context: EventContext, error: Exception
    ) -> None:
        if context.delivery >= self._settings.consumer_max_deliver:
            await self._dead_letter(message, context, error)
            return
        delay = self._settings.backoff_for(context.delivery)
        level = logging.WARNING if not isinstance(error, DISCONNECT_ERRORS) else logging.INFO
        log.log(
            level,
            "event failed; will retry",
            extra={
                "consumer": self.spec.durable,
                "event_id": context.event_id,
                "delivery": context.delivery,
                "retry_in_seconds": delay,
                "error": describe_error(error),
            },
        )
        await _settle(message.nak(delay=delay))

    async def _dead_letter(self, message: Msg, context: EventContext, error: BaseException) -> None:
        headers = dict(message.headers or {})
        # The stream sequence makes a replayed letter that fails again a new dead letter, while
        # redeliveries of one message (same sequence) still park once.
        sequence = message.metadata.sequence.stream
        headers |= {
            h.MSG_ID: f"{self.spec.durable}:{context.event_id or '-'}:{sequence}",
            h.EVENT_ID: context.event_id,
            h.ORIGINAL_SUBJECT: message.subject,
            h.LAST_ERROR: describe_error(error),
            h.CONSUMER: self.spec.durable,
            h.DELIVERIES: str(context.delivery),
        }
        try:
            await self._bus.publish(dlq_subject(self.spec.durable), message.data, headers=headers)
        except (NatsError, JetStreamError, OSError, TimeoutError, PayloadTooLarge) as publish_error:
            # Not parked: leave the message unacked so it comes back rather than vanish.
            log.error(
                "dead-letter publish failed; event left for redelivery",
                extra={"event_id": context.event_id, "error": describe_error(publish_error)},
            )
            await _settle(message.nak(delay=self._settings.backoff_for(context.delivery)))
            return
        await _settle(message.term())
        self.dead_lettered += 1
        self._telemetry.events_dead_lettered.add(1, {"consumer": self.spec.durable})
        log.error(
            "event dead-lettered",
            extra={
                "consumer": self.spec.durable,
                "event_id": context.event_id,
                "subject": message.subject,
                "deliveries": context.delivery,
                "error": describe_error(error),
            },
        )

    async def _record_lag(self, subscription: JetStreamContext.PullSubscription) -> None:
        try:
            info = await subscription.consumer_info()
        except (NatsError, JetStreamError, OSError, TimeoutError):
            return
        pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
        self._telemetry.gauges.consumer_pending[self.spec.durable] = pending


async def _settle(action: Awaitable[None]) -> None:
    """Sends an ack/nak/term; if the connection is gone, JetStream redelivers after AckWait."""
    try:
        await action
    except (NatsError, JetStreamError, OSError, TimeoutError) as error:
        log.warning(
            "could not settle message; it will be redelivered",
            extra={"error": describe_error(error)},
        )
