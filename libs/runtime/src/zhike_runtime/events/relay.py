"""The outbox relay: publishes committed outbox rows to JetStream and marks them sent after the ack.

Each event goes out with `Nats-Msg-Id` = its event id, so a republish after a crash between the
publish and the mark (within the stream's duplicate window) is dropped by JetStream, and after the
window by the consumers' inboxes. On PostgreSQL one replica publishes at a time (a transaction
advisory lock): two publishing side by side would put one party's events on the stream out of
their commit order. Another replica's round waits for the lock, then reads what is still unsent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_runtime.background import nap
from zhike_runtime.db import DISCONNECT_ERRORS, Database, delete_in_chunks
from zhike_runtime.events.bus import EventBus, PayloadTooLarge
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.redaction import describe_error
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.unit_of_work import lock_id

log = logging.getLogger(__name__)

PUBLISH_ERRORS = (NatsError, JetStreamError, OSError, TimeoutError)

# The publisher's turn on PostgreSQL, held until the batch's transaction ends (its rows are read
# after it is taken, so they are what the previous publisher left unsent).
_PUBLISHER_LOCK = select(func.pg_advisory_xact_lock(lock_id("zhike:outbox-relay")))

# A failing relay retries at most this far apart, and reports a failure that lasts this often.
_MAX_RETRY_SECONDS = 30.0
_REPORT_EVERY_SECONDS = 60.0


def _retry_delay(poll_seconds: float, failed_rounds: int) -> float:
    """The wait before the next round: the poll interval, doubled for each failed round in a
    row, up to `_MAX_RETRY_SECONDS`."""
    if failed_rounds == 0:
        return poll_seconds
    return min(poll_seconds * 2.0 ** min(failed_rounds, 16), _MAX_RETRY_SECONDS)


# Test seam for crash scenarios: awaited after JetStream acknowledged a batch and before the rows
# are marked sent. Production code never sets it.
AfterPublishHook = Callable[[list[str]], Awaitable[None]]


class OutboxRelay:
    def __init__(
        self,
        database: Database,
        bus: EventBus,
        telemetry: Telemetry,
        *,
        batch_size: int = 256,
        poll_seconds: float = 0.5,
        publish_timeout_seconds: float = 5.0,
        retention_seconds: float = 7 * 86400,
        after_publish: AfterPublishHook | None = None,
    ) -> None:
        self._db = database
        self._bus = bus
        self._telemetry = telemetry
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._timeout = publish_timeout_seconds
        self._retention = dt.timedelta(seconds=retention_seconds)
        self._after_publish = after_publish
        # Events refused as larger than NATS accepts, reported once each (they are retried on
        # every round and would otherwise log an error twice a second until someone acts).
        self._oversized_reported: set[str] = set()
        # The events NATS refused in the last round, and why: kept unsent, for the next.
        self._refused: list[tuple[str, BaseException]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self.duplicates_acknowledged = 0
        # Rounds failed in a row (0 once one succeeds): they space the next rounds out.
        self.failed_rounds = 0

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows, so they go out without waiting a poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        last_housekeeping = 0.0
        loop = asyncio.get_running_loop()
        last_reported = -_REPORT_EVERY_SECONDS
        while not self._stopping:
            # Cleared before reading, so a commit that lands while this batch is being published
            # wakes the next round at once instead of waiting out the poll interval.
            self._wake.clear()
            published = 0
            if self._bus.is_connected:
                failure: tuple[int, str, dict[str, Any]] | None = None
                try:
                    published = await self.publish_batch()
                except Exception as error:  # noqa: BLE001 - the relay must outlive any round
                    # A lost connection, a statement cancelled, a lock timeout, a read-only
                    # database after a failover: ended here, nothing would publish the outbox
                    # until a restart.
                    disconnected = isinstance(error, DISCONNECT_ERRORS)
                    failure = (
                        logging.WARNING if disconnected else logging.ERROR,
                        "outbox relay: database unavailable"
                        if disconnected
                        else "outbox relay round failed; will try again",
                        {"error": describe_error(error)},
                    )
                if failure is None and self._refused:
                    # NATS refused events (a full stream, a lost quorum): they wait in the
                    # outbox, and the round counts as failed so that rounds space out.
                    event_id, refusal = self._refused[0]
                    failure = (
                        logging.WARNING,
                        "outbox relay: NATS refused events; they stay in the outbox",
                        {
                            "refused": len(self._refused),
                            "event_id": event_id,
                            "error": describe_error(refusal),
                        },
                    )
                if failure is not None:
                    self.failed_rounds += 1
                    # Reported at the first failure and then once a minute, not at every
                    # round: a failure that lasts would fill the logs twice a second.
                    if self.failed_rounds == 1 or (
                        loop.time() - last_reported >= _REPORT_EVERY_SECONDS
                    ):
                        last_reported = loop.time()
                        level, message, extra = failure
                        log.log(
                            level, message, extra={**extra, "failed_rounds": self.failed_rounds}
                        )
                else:
                    if self.failed_rounds:
                        log.info(
                            "outbox relay recovered", extra={"failed_rounds": self.failed_rounds}
                        )
                    self.failed_rounds = 0
            if loop.time() - last_housekeeping > 5.0:
                last_housekeeping = loop.time()
                await self._housekeeping()
            if published < self._batch_size:
                # After failures, rounds space out (doubling up to a cap). A commit still wakes
                # the relay at once: it shows the database takes writes again.
                await nap(self._wake, _retry_delay(self._poll, self.failed_rounds))

    async def drain(self, deadline_seconds: float) -> int:
        """Publishes what is pending until nothing is left or the deadline passes; returns backlog."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_seconds
        while loop.time() < end and self._bus.is_connected:
            try:
                if await self.publish_batch() == 0:
                    break
            except Exception as error:  # noqa: BLE001 - shutting down: what is left stays queued
                log.warning(
                    "outbox drain stopped; the rest goes out after the restart",
                    extra={"error": describe_error(error)},
                )
                break
        return await self.backlog()

    async def publish_batch(self) -> int:
        """Publishes up to one batch of unsent events in order; returns how many were acked."""
        query = (
            select(
                outbox_event.c.event_id,
                outbox_event.c.subject,
                outbox_event.c.payload,
                outbox_event.c.headers,
            )
            .where(outbox_event.c.published_at.is_(None))
            .order_by(outbox_event.c.position)
            .limit(self._batch_size)
        )
        async with self._db.session() as session:
            if self._db.is_postgres:
                async with session.begin():
                    await session.execute(_PUBLISHER_LOCK)
                    rows = (await session.execute(query)).all()
                    acked = await self._publish(rows)
                    await self._mark_sent(session, acked)
                return len(acked)
            # SQLite: holding the file's write lock while waiting on NATS would stall every
            # writer, so read, publish outside any transaction, then mark in a short one.
            async with session.begin():
                rows = (await session.execute(query)).all()
            acked = await self._publish(rows)
            async with session.begin():
                await self._mark_sent(session, acked)
            return len(acked)

    async def _publish(self, rows: Sequence[Any]) -> list[str]:
        self._refused = []
        if not rows:
            return []
        bus = self._bus
        # Pipelined: all publishes are written in order, then the acks are awaited together.
        results = await asyncio.gather(
            *(
                bus.publish(
                    row.subject, row.payload, timeout=self._timeout, headers=dict(row.headers)
                )
                for row in rows
            ),
            return_exceptions=True,
        )
        acked: list[str] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, PayloadTooLarge):
                # Not sent, and not lost: the row stays unsent until the server's max_payload
                # is raised (or the producer is fixed and the row replaced), then goes out.
                if row.event_id not in self._oversized_reported:
                    self._oversized_reported.add(row.event_id)
                    log.error(
                        "event larger than the NATS max_payload; kept in the outbox",
                        extra={
                            "event_id": row.event_id,
                            "subject": row.subject,
                            "size_bytes": result.size,
                            "max_payload_bytes": result.limit,
                        },
                    )
                continue
            if isinstance(result, BaseException):
                if not isinstance(result, PUBLISH_ERRORS):
                    raise result
                self._refused.append((row.event_id, result))  # told once per round, by run()
                continue
            if result.duplicate:
                self.duplicates_acknowledged += 1
            acked.append(row.event_id)
        if self._after_publish is not None:
            await self._after_publish(acked)
        return acked

    async def _mark_sent(self, session: AsyncSession, acked: list[str]) -> None:
        if not acked:
            return
        await session.execute(
            update(outbox_event)
            .where(outbox_event.c.event_id.in_(acked))
            .values(published_at=dt.datetime.now(dt.UTC))
        )
        self._telemetry.events_published.add(len(acked))

    async def backlog(self) -> int:
        async with self._db.session() as session:
            count = await session.scalar(
                select(func.count()).where(outbox_event.c.published_at.is_(None))
            )
        return int(count or 0)

    async def oldest_unsent(self) -> dt.datetime | None:
        """When the oldest unsent event was committed; None when everything is sent."""
        async with self._db.session() as session:
            oldest: dt.datetime | None = await session.scalar(
                select(func.min(outbox_event.c.created_at)).where(
                    outbox_event.c.published_at.is_(None)
                )
            )
        if oldest is None:
            return None
        # SQLite hands the stored UTC time back without its zone.
        return oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=dt.UTC)

    async def _housekeeping(self) -> None:
        """Refreshes the backlog gauges and deletes sent rows past their retention."""
        try:
            self._telemetry.gauges.outbox_backlog = await self.backlog()
            self._telemetry.gauges.outbox_oldest_unsent = await self.oldest_unsent()
            cutoff = dt.datetime.now(dt.UTC) - self._retention
            await delete_in_chunks(
                self._db,
                outbox_event,
                outbox_event.c.position,
                outbox_event.c.published_at < cutoff,
            )
        except DISCONNECT_ERRORS as error:
            log.warning(
                "outbox housekeeping: database unavailable", extra={"error": describe_error(error)}
            )
        except Exception as error:  # noqa: BLE001 - the relay must outlive any round
            log.error("outbox housekeeping failed", extra={"error": describe_error(error)})
