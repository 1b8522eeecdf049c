"""Idempotent event consumers on durable JetStream pull consumers.

For each message: the event id goes into the inbox table in the same transaction as the handler's
effect (one `UnitOfWork`, so a handler may also stage outgoing events and take locks); a
redelivered event finds its id there and changes nothing. Acks are explicit and sent only after
the commit. A failing event is NAKed with a growing delay (JetStream's BackOff does not apply to
NAKs, so the delay is passed explicitly); after `consumer_max_deliver` attempts, or at once for an
event that can never succeed, it goes to the dead-letter stream with its subject and last error,
and is terminated so the events behind it keep flowing. An attempt that failed because the
database was unreachable is retried until it is back, however long: an outage is not the event's
fault. JetStream's own redeliveries are unlimited, so an event whose dead-letter publish failed
comes back too.

Also, for every consumer:
- an event type with no handler is recorded in the inbox, counted
  (`zhike.events.unhandled{consumer,event_type}`) and logged once (without its payload), then
  acked: never silently dropped, never re-counted on redelivery;
- while fetched messages wait or are being handled, `in_progress()` is sent for them every third
  of AckWait (for at most 10 AckWaits), so a slow handler keeps its message instead of having it
  redelivered to another;
- inbox rows older than `ServiceSettings.inbox_retention_seconds` (longer than the stream keeps
  events) are deleted every `consumer_inbox_prune_interval_seconds`;
- fetches return as soon as an event arrives, however the pull requests before them ended
  (`events.pull.PullConsumer`; nats-py's own fetch may wait out its timeout);
- with `ConsumerSpec.batch_handler`, the new events of one fetch are applied in one transaction;
  if that fails, each event is applied alone, so a poison event is retried and dead-lettered by
  itself. The batch handler may leave events for later (`ReceivedEvent.may_defer`: what they
  need is locked by another transaction, say another replica's batch, and waiting would
  serialise the replicas): their inbox rows are taken back and they join the next fetch's batch,
  unacked and kept alive; after `DEFER_LIMIT` batches an event must be applied, waiting if need
  be, so every event is applied in the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from sqlalchemy import and_, delete
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_runtime.db import Database, delete_in_chunks, insert_for, is_disconnect
from zhike_runtime.errors import ConcurrentUpdate, InvalidArgument
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import ConsumerDeclaration, EventBus, PayloadTooLarge, dlq_subject
from zhike_runtime.events.pull import PullConsumer
from zhike_runtime.events.schema import inbox_event
from zhike_runtime.redaction import describe_error
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.telemetry import Telemetry, extract_context
from zhike_runtime.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
U = TypeVar("U", bound=UnitOfWork)

# in_progress() is sent this often, as a fraction of AckWait: twice before the deadline, so one
# lost or late heartbeat does not cost a redelivery.
KEEP_ALIVE_FRACTION = 1 / 3
# ... but for no longer than this many AckWaits after the fetch: a handler that hangs must not
# hold its message (and the ones fetched with it) for ever; past it JetStream redelivers them,
# and the inbox absorbs whatever did commit.
KEEP_ALIVE_LIMIT = 10
# Batches an event may be left out of (ReceivedEvent.may_defer) before a batch must apply it.
DEFER_LIMIT = 3
# How long a fetch waits for new messages while deferred ones are in hand: they are retried at
# once on an idle stream instead of after a full fetch timeout.
CARRIED_FETCH_TIMEOUT = 0.05
# How many unhandled event types get a metric series each (`_type_label`).
_UNHANDLED_TYPE_LABELS = 20
# The inbox's column sizes (events/schema.py): a header longer than these can never be recorded.
_MAX_EVENT_ID = 64
_MAX_EVENT_TYPE = 255


class PermanentEventError(Exception):
    """The event can never be applied (malformed, violates an invariant): dead-letter it now."""


# Failures that no redelivery can mend, dead-lettered at once like a PermanentEventError: a
# value the database refuses as data (SQLSTATE class 22: too long, a NUL byte, out of range),
# and a domain rule the event's content breaks. Retried, each cost the whole batch's work on
# every delivery until the last one.
_NEVER_APPLICABLE = (DataError, InvalidArgument)


@dataclass(frozen=True)
class EventContext:
    event_id: str
    event_type: str
    subject: str
    delivery: int
    # The transaction the event is applied in: stage outgoing events and take locks through it.
    # The consumer commits it (with the inbox row); handlers never do.
    unit: UnitOfWork


@dataclass(frozen=True)
class EventHandler(Generic[M]):
    """Applies one event type inside the consumer's transaction (the session is `context.unit`'s,
    already begun)."""

    message_type: type[M]
    handle: Callable[[AsyncSession, M, EventContext], Awaitable[None]]

    @property
    def event_type(self) -> str:
        return self.message_type.DESCRIPTOR.full_name


@dataclass(frozen=True)
class ReceivedEvent:
    """One new event of a batch: its decoded payload, its context and the handler for its type.
    `may_defer`: the batch handler may leave it for a later batch instead of waiting for what
    it needs (false once it has been left out `DEFER_LIMIT` times)."""

    message: Message
    context: EventContext
    handler: EventHandler[Any]
    may_defer: bool = False


def unit_of(unit: UnitOfWork, kind: type[U]) -> U:
    """The consumer's unit as the service's own kind, which its consumers are declared with
    (`ConsumerSpec.unit_of_work`): a TypeError names the kind when wired otherwise."""
    if not isinstance(unit, kind):
        raise TypeError(f"this consumer runs in a {kind.__name__}, not a {type(unit).__name__}")
    return unit


# Applies a batch of new events (stream order, none seen before) in the unit's transaction.
# Returns the events it left for a later batch (only ones with `may_defer`; None: none).
BatchHandler = Callable[
    [UnitOfWork, Sequence[ReceivedEvent]], Awaitable[Sequence[ReceivedEvent] | None]
]


async def apply_in_turn(unit: UnitOfWork, events: Sequence[ReceivedEvent]) -> None:
    """The simplest batch handler: each event's own handler, in turn, in one transaction (one
    commit for the batch). A service with set-based writes supplies its own instead."""
    for event in events:
        await event.handler.handle(unit.session, event.message, event.context)


@dataclass(frozen=True)
class ConsumerSpec:
    durable: str  # <consumer>-<producer>
    stream: str
    filter_subjects: tuple[str, ...]
    handlers: tuple[EventHandler[Any], ...]
    # The unit each event (or batch) is applied in, when the service's handlers need its
    # repositories; default: a plain UnitOfWork that wakes the relay after a commit.
    unit_of_work: Callable[[], UnitOfWork] | None = None
    # Opt-in: apply the new events of each fetch in one transaction. `handlers` still apply
    # each event alone when the batch fails, so they must have the same effect.
    batch_handler: BatchHandler | None = None


# Test seam for crash scenarios: awaited after the effect committed and before the ack.
AfterCommitHook = Callable[[EventContext], Awaitable[None]]


class _Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNHANDLED = "unhandled"
    DEFERRED = "deferred"  # left by the batch handler for the next batch


@dataclass(frozen=True)
class _Delivery:
    """What the consumer reads from one message before applying it."""

    message: Msg
    event_id: str
    event_type: str
    delivery: int
    handler: EventHandler[Any] | None


class EventConsumer:
    def __init__(
        self,
        spec: ConsumerSpec,
        database: Database,
        bus: EventBus,
        telemetry: Telemetry,
        settings: ServiceSettings,
        *,
        on_commit: Callable[[], None] | None = None,
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
        self._on_commit = on_commit
        self._after_commit = after_commit
        self._stopping = False
        self._labels = {"consumer": spec.durable}
        # Counts for this instance (the metrics carry the same, labelled by consumer).
        self.applied = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.unhandled = 0
        self.batches_applied = 0
        self.batches_failed = 0
        self.deferred = 0
        # The unhandled event types with a metric series of their own.
        self._unhandled_types: set[str] = set()
        # Retries a database outage caused since the last report of it, and when that was.
        self._held_back = 0
        self._held_back_reported: float | None = None
        # The deferred messages in hand (by id(message)) and how many batches left each out.
        self._times_deferred: dict[int, int] = {}
        # The series exist from the start at 0: a counter first seen at 1 shows no increase()
        # to Prometheus, and the first dead letter would not alert.
        for counter in (
            telemetry.events_applied,
            telemetry.events_duplicate,
            telemetry.events_dead_lettered,
            telemetry.events_unhandled,
            telemetry.events_deferred,
        ):
            counter.add(0, self._labels)
        bus.add_consumer(
            ConsumerDeclaration(
                durable=spec.durable,
                stream=spec.stream,
                filter_subjects=spec.filter_subjects,
                ack_wait_seconds=settings.consumer_ack_wait_seconds,
            )
        )

    def stop(self) -> None:
        """Finishes the message in hand (applied and acked, or NAKed), then returns from run()."""
        self._stopping = True

    async def run(self) -> None:
        await self._bus.wait_ready()
        pruning = asyncio.create_task(self._prune_periodically(), name=f"prune-{self.spec.durable}")
        try:
            await self._consume()
        finally:
            pruning.cancel()

    async def _consume(self) -> None:
        pull: PullConsumer | None = None
        loop = asyncio.get_running_loop()
        last_lag_check = 0.0
        # Messages a batch left for later: applied with the next fetch, settled by then.
        carried: list[Msg] = []
        while not self._stopping:
            if pull is None and self._bus.awaits_stream(self.spec.durable):
                # Its producer has not created the stream yet: nothing to fetch, nothing wrong.
                await asyncio.sleep(0.5)
                continue
            try:
                if pull is None:
                    pull = await self._bus.pull(self.spec.stream, self.spec.durable)
                messages = await pull.fetch(
                    max(self._settings.consumer_batch_size - len(carried), 1),
                    timeout=(
                        CARRIED_FETCH_TIMEOUT
                        if carried
                        else self._settings.consumer_fetch_wait_seconds
                    ),
                )
            except (NatsError, JetStreamError, OSError) as error:
                log.warning(
                    "fetch failed; retrying",
                    extra={"consumer": self.spec.durable, "error": describe_error(error)},
                )
                await asyncio.sleep(0.5)
                continue
            if carried or messages:
                carried = await self._process_fetched([*carried, *messages])
            if pull is not None and loop.time() - last_lag_check > 5.0:
                last_lag_check = loop.time()
                await self._record_lag()
        for message in carried:
            # Stopping: hand them back for another replica (or our next start) at once.
            await _settle(message.nak())
        if pull is not None:
            try:
                await pull.close()
            except (NatsError, JetStreamError) as error:
                log.info("closing the pull consumer failed", extra={"error": describe_error(error)})

    async def _process_fetched(self, messages: Sequence[Msg]) -> list[Msg]:
        """Applies one fetch (as a batch, or one by one), keeping the unsettled ones alive.
        Returns the messages the batch left for later, unsettled."""
        unsettled: dict[int, Msg] = {id(m): m for m in messages}
        keep_alive = asyncio.create_task(self._keep_alive(unsettled))
        deferred: list[Msg] = []
        try:
            if self.spec.batch_handler is not None and len(messages) > 1 and not self._stopping:
                deferred = await self._process_batch(messages, unsettled)
            for message in messages:
                if id(message) not in unsettled:
                    continue  # settled by the batch
                if self._stopping:
                    # Not started: hand it back for another replica (or our next start) at once.
                    await _settle(message.nak())
                else:
                    await self._process(message)
                del unsettled[id(message)]
        finally:
            keep_alive.cancel()
        self._times_deferred = {id(m): self._times_deferred.get(id(m), 0) + 1 for m in deferred}
        return deferred

    async def _keep_alive(self, unsettled: Mapping[int, Msg]) -> None:
        """Tells JetStream every fetched message not yet settled is still being worked on, so
        its AckWait restarts instead of expiring while earlier ones or a slow handler run."""
        ack_wait = self._settings.consumer_ack_wait_seconds
        interval = ack_wait * KEEP_ALIVE_FRACTION
        for _ in range(round(KEEP_ALIVE_LIMIT / KEEP_ALIVE_FRACTION)):
            await asyncio.sleep(interval)
            for message in list(unsettled.values()):
                try:
                    await message.in_progress()
                except (NatsError, JetStreamError, OSError, TimeoutError) as error:
                    log.info(
                        "could not extend the ack deadline",
                        extra={"consumer": self.spec.durable, "error": describe_error(error)},
                    )
        log.warning(
            "handling has taken too long; its messages are left to be redelivered",
            extra={
                "consumer": self.spec.durable,
                "unsettled": len(unsettled),
                "seconds": ack_wait * KEEP_ALIVE_LIMIT,
            },
        )

    def _read(self, message: Msg) -> _Delivery:
        headers = message.headers or {}
        event_type = headers.get(h.EVENT_TYPE, "")
        return _Delivery(
            message=message,
            event_id=headers.get(h.EVENT_ID) or headers.get(h.MSG_ID) or "",
            event_type=event_type,
            delivery=message.metadata.num_delivered or 1,
            handler=self._handlers.get(event_type),
        )

    def _decode(self, delivery: _Delivery) -> Message | None:
        """The payload, None for a type without a handler; raises PermanentEventError for a
        message that can never be recorded or applied."""
        if not delivery.event_id:
            raise PermanentEventError("message has no event id header")
        if len(delivery.event_id) > _MAX_EVENT_ID:
            raise PermanentEventError(f"event id longer than {_MAX_EVENT_ID} characters")
        if not delivery.event_type:
            raise PermanentEventError("message has no event type header")
        if len(delivery.event_type) > _MAX_EVENT_TYPE:
            raise PermanentEventError(f"event type longer than {_MAX_EVENT_TYPE} characters")
        if delivery.handler is None:
            return None
        try:
            payload: Message = delivery.handler.message_type.FromString(delivery.message.data)
        except DecodeError as error:
            raise PermanentEventError(f"payload is not a {delivery.event_type}: {error}") from error
        return payload

    def _unit(self) -> UnitOfWork:
        if self.spec.unit_of_work is not None:
            return self.spec.unit_of_work()
        return UnitOfWork(self._db, on_commit=self._on_commit)

    def _context(self, delivery: _Delivery, unit: UnitOfWork) -> EventContext:
        return EventContext(
            delivery.event_id,
            delivery.event_type,
            delivery.message.subject,
            delivery.delivery,
            unit,
        )

    # --- one event at a time -------------------------------------------------------------------

    async def _process(self, message: Msg) -> None:
        delivery = self._read(message)
        headers = message.headers or {}
        with self._telemetry.tracer.start_as_current_span(
            f"consume {delivery.event_type or message.subject}",
            context=extract_context(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": message.subject,
                "messaging.consumer.group.name": self.spec.durable,
                "messaging.message.id": delivery.event_id,
            },
        ) as span:
            try:
                payload = self._decode(delivery)
                outcome, context = await self._apply(delivery, payload)
            except (PermanentEventError, *_NEVER_APPLICABLE) as error:
                span.set_status(Status(StatusCode.ERROR, describe_error(error)))
                await self._dead_letter(delivery, error)
                return
            except Exception as error:  # noqa: BLE001 - any failure is retried, then dead-lettered
                failure = _reported(error)
                span.set_status(Status(StatusCode.ERROR, describe_error(failure)))
                await self._retry_or_dead_letter(delivery, failure)
                return
            if self._after_commit is not None:
                await self._after_commit(context)
            await _settle(message.ack())
            self._count([(delivery, outcome)])

    async def _apply(
        self, delivery: _Delivery, payload: Message | None
    ) -> tuple[_Outcome, EventContext]:
        """Records the event id and applies the effect in one transaction."""
        async with self._unit() as unit:
            context = self._context(delivery, unit)
            row = _inbox_row(self.spec.durable, delivery, dt.datetime.now(dt.UTC))
            statement = insert_for(unit.dialect, inbox_event).values(row).on_conflict_do_nothing()
            result = await unit.session.execute(statement)
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return _Outcome.DUPLICATE, context
            if delivery.handler is None or payload is None:
                await unit.commit()
                return _Outcome.UNHANDLED, context
            await delivery.handler.handle(unit.session, payload, context)
            await unit.commit()
        return _Outcome.APPLIED, context

    # --- a batch in one transaction ------------------------------------------------------------

    async def _process_batch(self, messages: Sequence[Msg], unsettled: dict[int, Msg]) -> list[Msg]:
        """Applies the well-formed events of one fetch in one transaction and settles them.
        Leaves in `unsettled` whatever must go one by one: malformed messages (to be dead-
        lettered alone) and, if the batch fails, all of them. Returns the ones the batch handler
        left for later, taken out of `unsettled` and not settled."""
        assert self.spec.batch_handler is not None
        deliveries: list[tuple[_Delivery, Message | None]] = []
        for message in messages:
            delivery = self._read(message)
            try:
                deliveries.append((delivery, self._decode(delivery)))
            except PermanentEventError:
                continue  # the one-by-one path dead-letters it with its reason
        if not deliveries:
            return []
        # One span for the batch, linked to each event's producer span.
        producers = (
            trace.get_current_span(extract_context(d.message.headers or {})).get_span_context()
            for d, _payload in deliveries
        )
        links = [Link(producer) for producer in producers if producer.is_valid]
        with self._telemetry.tracer.start_as_current_span(
            f"consume batch {self.spec.durable}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "nats",
                "messaging.consumer.group.name": self.spec.durable,
                "messaging.batch.message_count": len(deliveries),
            },
        ) as span:
            try:
                outcomes = await self._apply_batch(deliveries)
            except Exception as error:  # noqa: BLE001 - the events are applied one by one instead
                span.set_status(Status(StatusCode.ERROR, describe_error(error)))
                self.batches_failed += 1
                log.info(
                    "batch failed; applying its events one by one",
                    extra={
                        "consumer": self.spec.durable,
                        "events": len(deliveries),
                        "error": describe_error(error),
                    },
                )
                return []
        self.batches_applied += 1
        settled = [item for item in outcomes if item[1] is not _Outcome.DEFERRED]
        if self._after_commit is not None:
            for _delivery, _outcome, context in settled:
                await self._after_commit(context)
        for delivery, _outcome, _context in settled:
            await _settle(delivery.message.ack())
        for delivery, _outcome, _context in outcomes:
            del unsettled[id(delivery.message)]
        self._count([(delivery, outcome) for delivery, outcome, _context in outcomes], batch=True)
        return [d.message for d, outcome, _c in outcomes if outcome is _Outcome.DEFERRED]

    async def _apply_batch(
        self, deliveries: Sequence[tuple[_Delivery, Message | None]]
    ) -> list[tuple[_Delivery, _Outcome, EventContext]]:
        """One transaction: the inbox rows of every event, then the batch handler with the ones
        not seen before. Returns each delivery's outcome and context, in fetch order."""
        assert self.spec.batch_handler is not None
        async with self._unit() as unit:
            now = dt.datetime.now(dt.UTC)
            # The first copy of each event id (a republished copy may come in the same fetch).
            first: dict[str, _Delivery] = {}
            for delivery, _payload in deliveries:
                first.setdefault(delivery.event_id, delivery)
            # The rows as parameters of one cached statement (sent as multi-row INSERTs by
            # SQLAlchemy's "insertmanyvalues"), not a VALUES clause compiled for every batch.
            statement = (
                insert_for(unit.dialect, inbox_event)
                .on_conflict_do_nothing()
                .returning(inbox_event.c.event_id)
            )
            rows = [_inbox_row(self.spec.durable, d, now) for d in first.values()]
            new_ids = set((await unit.session.execute(statement, rows)).scalars())
            outcomes: list[tuple[_Delivery, _Outcome, EventContext]] = []
            received: list[ReceivedEvent] = []
            for delivery, payload in deliveries:
                context = self._context(delivery, unit)
                if first[delivery.event_id] is not delivery or delivery.event_id not in new_ids:
                    outcomes.append((delivery, _Outcome.DUPLICATE, context))
                elif delivery.handler is None or payload is None:
                    outcomes.append((delivery, _Outcome.UNHANDLED, context))
                else:
                    outcomes.append((delivery, _Outcome.APPLIED, context))
                    times = self._times_deferred.get(id(delivery.message), 0)
                    received.append(
                        ReceivedEvent(
                            payload, context, delivery.handler, may_defer=times < DEFER_LIMIT
                        )
                    )
            left = await self.spec.batch_handler(unit, received) if received else None
            if left:
                outcomes = await self._take_back(unit, outcomes, received, left)
            await unit.commit()
        return outcomes

    async def _take_back(
        self,
        unit: UnitOfWork,
        outcomes: list[tuple[_Delivery, _Outcome, EventContext]],
        received: Sequence[ReceivedEvent],
        left: Sequence[ReceivedEvent],
    ) -> list[tuple[_Delivery, _Outcome, EventContext]]:
        """The events the batch handler left for later: their inbox rows deleted (they are not
        applied yet), their outcomes DEFERRED."""
        deferrable = {id(event.context) for event in received if event.may_defer}
        contexts = {id(event.context) for event in left}
        if not contexts <= deferrable:
            # A handler bug, not the events' fault: the batch rolls back and they go one by one.
            raise RuntimeError("the batch handler left an event it may not defer")
        ids = [event.context.event_id for event in left]
        await unit.session.execute(
            delete(inbox_event).where(
                inbox_event.c.consumer == self.spec.durable, inbox_event.c.event_id.in_(ids)
            )
        )
        return [
            (delivery, _Outcome.DEFERRED if id(context) in contexts else outcome, context)
            for delivery, outcome, context in outcomes
        ]

    # --- outcomes ------------------------------------------------------------------------------

    def _count(
        self, outcomes: Sequence[tuple[_Delivery, _Outcome]], *, batch: bool = False
    ) -> None:
        """Counters and log lines for settled events: a line per event one at a time, a line
        per batch in a batch (thousands of lines a second would cost a core's share)."""
        applied = duplicates = deferred = 0
        for delivery, outcome in outcomes:
            if outcome is _Outcome.DEFERRED:
                deferred += 1
            elif outcome is _Outcome.APPLIED:
                applied += 1
                if not batch:
                    log.info(
                        "event applied",
                        extra={
                            "consumer": self.spec.durable,
                            "event_id": delivery.event_id,
                            "event_type": delivery.event_type,
                        },
                    )
            elif outcome is _Outcome.DUPLICATE:
                duplicates += 1
                if not batch:
                    log.info(
                        "duplicate event absorbed",
                        extra={"consumer": self.spec.durable, "event_id": delivery.event_id},
                    )
            else:
                self.unhandled += 1
                self._telemetry.events_unhandled.add(
                    1, {"consumer": self.spec.durable, "event_type": self._type_label(delivery)}
                )
                # Ids and type only: the payload may carry personal data.
                log.warning(
                    "event type without a handler; recorded and acknowledged",
                    extra={
                        "consumer": self.spec.durable,
                        "event_id": delivery.event_id,
                        "event_type": delivery.event_type,
                        "subject": delivery.message.subject,
                    },
                )
        if batch:
            log.info(
                "batch applied",
                extra={
                    "consumer": self.spec.durable,
                    "applied": applied,
                    "duplicates": duplicates,
                    "deferred": deferred,
                    "first_event_id": outcomes[0][0].event_id,
                    "last_event_id": outcomes[-1][0].event_id,
                },
            )
        if applied:
            self.applied += applied
            if self._held_back_reported is not None:
                log.info(
                    "database reachable again; events apply",
                    extra={"consumer": self.spec.durable, "retries": self._held_back},
                )
                self._held_back_reported = None
                self._held_back = 0
            self._telemetry.events_applied.add(applied, self._labels)
        if deferred:
            self.deferred += deferred
            self._telemetry.events_deferred.add(deferred, self._labels)
        if duplicates:
            self.duplicates += duplicates
            self._telemetry.events_duplicate.add(duplicates, self._labels)

    async def _retry_or_dead_letter(self, delivery: _Delivery, error: BaseException) -> None:
        # The database unreachable (an outage, a failover) says nothing about the event: it is
        # retried until the database is back, never dead-lettered for it, or every event fetched
        # during an outage of a few seconds would be parked and need replaying by hand.
        unreachable = is_disconnect(error)
        if delivery.delivery >= self._settings.consumer_max_deliver and not unreachable:
            await self._dead_letter(delivery, error)
            return
        delay = self._settings.backoff_for(delivery.delivery)
        if unreachable:
            self._report_unreachable(error)
        else:
            log.warning(
                "event failed; will retry",
                extra={
                    "consumer": self.spec.durable,
                    "event_id": delivery.event_id,
                    "delivery": delivery.delivery,
                    "retry_in_seconds": delay,
                    "error": describe_error(error),
                },
            )
        await _settle(delivery.message.nak(delay=delay))

    def _type_label(self, delivery: _Delivery) -> str:
        """The event type as a metric label: the publisher chooses it, so only the first few
        types seen are series of their own and the rest share "other" (a series each would
        let any publisher grow the metrics without bound)."""
        seen = self._unhandled_types
        if delivery.event_type not in seen and len(seen) < _UNHANDLED_TYPE_LABELS:
            seen.add(delivery.event_type)
        return delivery.event_type if delivery.event_type in seen else "other"

    def _report_unreachable(self, error: BaseException) -> None:
        """One line for the first event the database outage held back, then one a minute with
        how many more: every pending event is retried through an outage, and a line each would
        be thousands a minute."""
        self._held_back += 1
        now = asyncio.get_running_loop().time()
        if self._held_back_reported is not None and now - self._held_back_reported < 60.0:
            return
        log.info(
            "database unreachable; events wait and are retried",
            extra={
                "consumer": self.spec.durable,
                "retries": self._held_back,
                "error": describe_error(error),
            },
        )
        self._held_back_reported = now
        self._held_back = 0

    async def _dead_letter(self, delivery: _Delivery, error: BaseException) -> None:
        message = delivery.message
        headers = dict(message.headers or {})
        # The stream sequence makes a replayed letter that fails again a new dead letter, while
        # redeliveries of one message (same sequence) still park once.
        sequence = message.metadata.sequence.stream
        headers |= {
            h.MSG_ID: f"{self.spec.durable}:{delivery.event_id or '-'}:{sequence}",
            h.EVENT_ID: delivery.event_id,
            h.ORIGINAL_SUBJECT: message.subject,
            h.LAST_ERROR: describe_error(error),
            h.CONSUMER: self.spec.durable,
            h.DELIVERIES: str(delivery.delivery),
        }
        try:
            try:
                await self._bus.publish(
                    dlq_subject(self.spec.durable), message.data, headers=headers
                )
            except PayloadTooLarge:
                # An event near the size limit does not fit with the letter's headers: parked
                # without its payload, which stays in its stream at the sequence named. Left
                # for redelivery instead, it would be lost once its deliveries ran out.
                headers |= {
                    h.PAYLOAD_OMITTED: str(len(message.data)),
                    h.ORIGINAL_SEQUENCE: str(sequence),
                }
                await self._bus.publish(dlq_subject(self.spec.durable), b"", headers=headers)
        except (NatsError, JetStreamError, OSError, TimeoutError, PayloadTooLarge) as publish_error:
            # Not parked: leave the message unacked so it comes back rather than vanish.
            log.error(
                "dead-letter publish failed; event left for redelivery",
                extra={"event_id": delivery.event_id, "error": describe_error(publish_error)},
            )
            await _settle(message.nak(delay=self._settings.backoff_for(delivery.delivery)))
            return
        await _settle(message.term())
        self.dead_lettered += 1
        self._telemetry.events_dead_lettered.add(1, self._labels)
        log.error(
            "event dead-lettered",
            extra={
                "consumer": self.spec.durable,
                "event_id": delivery.event_id,
                "subject": message.subject,
                "deliveries": delivery.delivery,
                "error": describe_error(error),
            },
        )

    # --- housekeeping --------------------------------------------------------------------------

    async def prune_inbox(self, older_than: dt.datetime) -> int:
        """Deletes this consumer's inbox rows processed before `older_than`; returns how many."""
        return await delete_in_chunks(
            self._db,
            inbox_event,
            inbox_event.c.event_id,
            and_(
                inbox_event.c.consumer == self.spec.durable,
                inbox_event.c.processed_at < older_than,
            ),
        )

    async def _prune_periodically(self) -> None:
        retention = dt.timedelta(seconds=self._settings.inbox_retention_seconds)
        while True:
            try:
                deleted = await self.prune_inbox(dt.datetime.now(dt.UTC) - retention)
            except (SQLAlchemyError, OSError) as error:
                log.warning(
                    "inbox pruning failed; will try again",
                    extra={"consumer": self.spec.durable, "error": describe_error(error)},
                )
            else:
                if deleted:
                    log.info(
                        "inbox pruned", extra={"consumer": self.spec.durable, "deleted": deleted}
                    )
            await asyncio.sleep(self._settings.consumer_inbox_prune_interval_seconds)

    async def _record_lag(self) -> None:
        try:
            info = await self._bus.js.consumer_info(self.spec.stream, self.spec.durable)
        except (NatsError, JetStreamError, OSError, TimeoutError):
            return
        pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
        self._telemetry.gauges.consumer_pending[self.spec.durable] = pending


def _reported(error: Exception) -> BaseException:
    """The error a failed event is logged and dead-lettered with: the database error itself
    where the unit of work wrapped it as ConcurrentUpdate (to a consumer a conflict is one more
    failure to retry, and a dead letter should name what actually failed)."""
    if isinstance(error, ConcurrentUpdate) and error.__cause__ is not None:
        return error.__cause__
    return error


def _inbox_row(consumer: str, delivery: _Delivery, now: dt.datetime) -> dict[str, Any]:
    return {
        "consumer": consumer,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "processed_at": now,
    }


async def _settle(action: Awaitable[None]) -> None:
    """Sends an ack/nak/term; if the connection is gone, JetStream redelivers after AckWait."""
    try:
        await action
    except (NatsError, JetStreamError, OSError, TimeoutError) as error:
        log.warning(
            "could not settle message; it will be redelivered",
            extra={"error": describe_error(error)},
        )
