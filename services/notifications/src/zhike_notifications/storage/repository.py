"""The notifications' stores over SQLAlchemy Core, and its unit of work.

Repositories never commit; the unit of work does. Times are stored in UTC (SQLite keeps no zone:
they come back naive and are read as UTC). A notification is written over the version it was
read at (`save`: a conditional UPDATE), so two replicas acting on one notification cannot both
win; consents are written by one conditional upsert that keeps the newer decision.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_notifications.domain.gates import SentMessage
from zhike_notifications.domain.model import Category, Channel, Notification, Status
from zhike_notifications.domain.ports import (
    ConsentEntry,
    ContactPreferences,
    DecisionWithdrawal,
    HeldConsents,
    InboxEntry,
    OutboundEvent,
    StoredNotification,
)
from zhike_notifications.storage import records
from zhike_notifications.storage.schema import (
    consent,
    contact_preferences,
    decision_withdrawal,
    inbox_message,
    notification,
    party_profile,
    webhook_delivery,
)
from zhike_runtime.crypto import FieldKeys, KeyRing
from zhike_runtime.db import Database, as_utc, delete_chunk, insert_for, to_utc
from zhike_runtime.errors import ConcurrentUpdate
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.unit_of_work import UnitOfWork

# Nothing more will be sent for these (receipts may still arrive for a SENT one long after; by
# the retention period they no longer matter).
FINISHED = (
    Status.SENT,
    Status.DELIVERED,
    Status.FAILED,
    Status.SUPPRESSED,
    Status.CANCELLED,
)


class _Store:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    @property
    def _is_postgres(self) -> bool:
        return self._dialect == "postgresql"


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


# --- notifications ----------------------------------------------------------------------------


@functools.cache
def _insert_new(dialect: str) -> sa.Executable:
    # Any unique key taken (the id, the idempotency key): nothing written.
    return insert_for(dialect, notification).on_conflict_do_nothing()


_BY_ID = sa.select(notification).where(notification.c.notification_id == sa.bindparam("id"))
_LEASE = (
    sa.update(notification)
    .where(notification.c.notification_id.in_(sa.bindparam("ids", expanding=True)))
    .values(lease_until=sa.bindparam("until"))
)
# Handed to a provider: accepted, or an attempt in flight.
_handed_at = sa.func.coalesce(notification.c.accepted_at, notification.c.sending_started_at)
_HISTORY = (
    sa.select(
        notification.c.channel,
        notification.c.category,
        notification.c.offer_id,
        notification.c.template_id,
        _handed_at.label("at"),
    )
    .where(
        notification.c.party_id == sa.bindparam("party_id"),
        # A message created before `since` but deferred until after it counts: by when it went.
        _handed_at >= sa.bindparam("since"),
    )
    .order_by(_handed_at, notification.c.notification_id)
)


# The party's SendNotification requests in the rate limit's windows. The (party, created at)
# index bounds the read to the window; an offer's notification (it names its decision) is a
# decision, not a request, and is passed over.
_REQUESTED_SINCE = (
    sa.select(notification.c.created_at)
    .where(
        notification.c.party_id == sa.bindparam("party_id"),
        notification.c.created_at > sa.bindparam("since"),
        notification.c.decision_id == "",
    )
    .order_by(notification.c.created_at)
)


class SqlNotificationStore(_Store):
    def __init__(self, session: AsyncSession, dialect: str, ring: KeyRing) -> None:
        super().__init__(session, dialect)
        self._ring = ring

    async def _one(
        self, query: sa.Select[Any], parameters: dict[str, Any] | None = None
    ) -> StoredNotification | None:
        row = (await self._session.execute(query, parameters)).first()
        return None if row is None else records.stored_of(row, self._ring)

    async def add(self, stored: StoredNotification) -> bool:
        result = await self._session.execute(
            _insert_new(self._dialect), records.notification_row(stored, self._ring)
        )
        return _rowcount(result) == 1

    async def get(self, notification_id: str) -> StoredNotification | None:
        return await self._one(_BY_ID, {"id": notification_id})

    async def get_for_update(self, notification_id: str) -> StoredNotification | None:
        query = _BY_ID.with_for_update() if self._is_postgres else _BY_ID
        return await self._one(query, {"id": notification_id})

    async def by_idempotency_key(self, key: str) -> StoredNotification | None:
        if not key:
            return None
        return await self._one(sa.select(notification).where(notification.c.idempotency_key == key))

    async def by_decision(self, decision_id: str) -> list[StoredNotification]:
        if not decision_id:
            return []
        rows = await self._session.execute(
            sa.select(notification)
            .where(notification.c.decision_id == decision_id)
            .order_by(notification.c.created_at, notification.c.notification_id)
        )
        return [records.stored_of(row, self._ring) for row in rows]

    async def by_provider_message(
        self, provider: str, provider_message_id: str
    ) -> StoredNotification | None:
        return await self._one(
            sa.select(notification)
            .where(
                notification.c.accepted_provider == provider,
                notification.c.accepted_provider_message_id == provider_message_id,
            )
            # One provider id is one message; should a provider reuse ids, the latest is it.
            .order_by(notification.c.created_at.desc())
            .limit(1)
        )

    async def save(self, stored: StoredNotification, expected_version: int) -> None:
        values = records.notification_row(stored, self._ring)
        # The row's key and the dispatcher's lease are not the use case's to change.
        del values["notification_id"]
        result = await self._session.execute(
            sa.update(notification)
            .where(
                notification.c.notification_id == stored.notification.notification_id,
                notification.c.version == expected_version,
            )
            .values(**values)
        )
        if _rowcount(result) == 0:
            raise ConcurrentUpdate(
                f"the notification is no longer at version {expected_version} "
                "(another writer changed it, or it is gone)"
            )

    async def due(
        self, now: dt.datetime, limit: int, exclude: Iterable[str] = ()
    ) -> list[tuple[str, str]]:
        now = to_utc(now)
        query = (
            sa.select(notification.c.notification_id, notification.c.party_id)
            .where(
                notification.c.due_at <= now,
                sa.or_(notification.c.lease_until.is_(None), notification.c.lease_until <= now),
            )
            .order_by(notification.c.due_at, notification.c.notification_id)
            .limit(limit)
        )
        excluded = list(exclude)
        if excluded:
            query = query.where(notification.c.notification_id.not_in(excluded))
        if self._is_postgres:
            # Another dispatcher choosing at the same moment skips these instead of leasing
            # them twice (its own lease is written in the same short transaction).
            query = query.with_for_update(skip_locked=True)
        rows = await self._session.execute(query)
        return [(row.notification_id, row.party_id) for row in rows]

    async def lease(self, notification_ids: Sequence[str], until: dt.datetime) -> None:
        if notification_ids:
            await self._session.execute(
                _LEASE, {"ids": list(notification_ids), "until": to_utc(until)}
            )

    async def history(self, party_id: str, since: dt.datetime) -> list[SentMessage]:
        rows = await self._session.execute(_HISTORY, {"party_id": party_id, "since": to_utc(since)})
        return [
            SentMessage(
                at=as_utc(row.at),
                channel=Channel(row.channel),
                category=Category(row.category),
                # Message.content_key, from the row's two columns.
                content_key=(
                    f"offer:{row.offer_id}" if row.offer_id else f"template:{row.template_id}"
                ),
            )
            for row in rows
        ]

    async def of_party(
        self, party_id: str, before: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Notification]:
        order = (notification.c.created_at, notification.c.notification_id)
        query = sa.select(notification).where(notification.c.party_id == party_id)
        if before is not None:
            query = query.where(sa.tuple_(*order) < sa.tuple_(to_utc(before[0]), before[1]))
        rows = await self._session.execute(
            query.order_by(*(column.desc() for column in order)).limit(limit)
        )
        return [records.notification_of(row) for row in rows]

    async def requested_since(self, party_id: str, since: dt.datetime) -> list[dt.datetime]:
        rows = await self._session.scalars(
            _REQUESTED_SINCE, {"party_id": party_id, "since": to_utc(since)}
        )
        return [as_utc(at) for at in rows]

    async def prune(self, before: dt.datetime, limit: int) -> int:
        return await delete_chunk(
            self._session,
            notification,
            notification.c.notification_id,
            sa.and_(
                notification.c.status.in_([status.value for status in FINISHED]),
                notification.c.created_at < to_utc(before),
                # An attempt still in flight (a send that raced a withdrawal) is not finished.
                notification.c.sending_attempt.is_(None),
            ),
            limit,
        )


# --- consents ---------------------------------------------------------------------------------


@functools.cache
def _put_consent(dialect: str) -> sa.Executable:
    statement = insert_for(dialect, consent)
    newer = sa.tuple_(consent.c.decided_at, consent.c.profile_version) < sa.tuple_(
        statement.excluded.decided_at, statement.excluded.profile_version
    )
    return statement.on_conflict_do_update(
        index_elements=["party_id", "channel", "purpose"],
        set_={
            column: statement.excluded[column]
            for column in (
                "given",
                "captured_where",
                "captured_at",
                "text_version",
                "decided_at",
                "profile_version",
            )
        },
        # The order-safety: only a newer decision replaces the one held.
        where=newer,
    ).returning(consent.c.party_id)


def _order(entry: ConsentEntry) -> tuple[dt.datetime, int]:
    return (entry.decided_at, entry.profile_version)


class SqlConsentStore(_Store):
    async def held(self, party_id: str) -> HeldConsents:
        # One statement, so one snapshot on PostgreSQL too: read apart (consents, then the
        # version), a ProfileChanged committed between the two reads looked applied while its
        # consent was not seen, and a consented offer was refused.
        as_of = (
            sa.select(party_profile.c.profile_version)
            .where(party_profile.c.party_id == party_id)
            .scalar_subquery()
        )
        # A one-row anchor joined to the consents: the version comes back with no consent too.
        anchor = sa.select(as_of.label("as_of")).subquery("anchor")
        rows = (
            await self._session.execute(
                sa.select(anchor.c.as_of, consent)
                .select_from(anchor.outerjoin(consent, consent.c.party_id == party_id))
                .order_by(consent.c.channel, consent.c.purpose)
            )
        ).all()
        entries = tuple(records.consent_of(row) for row in rows if row.party_id is not None)
        return HeldConsents(entries, int(rows[0].as_of or 0))

    async def put(self, entries: Sequence[ConsentEntry]) -> int:
        # One row per key, the newest: a statement may not touch a row twice, and the
        # conditional upsert would leave only the newest anyway.
        newest: dict[tuple[str, str, str], ConsentEntry] = {}
        for entry in entries:
            key = (entry.party_id, entry.record.channel.value, entry.record.purpose.value)
            held = newest.get(key)
            if held is None or _order(held) < _order(entry):
                newest[key] = entry
        if not newest:
            return 0
        rows = await self._session.execute(
            _put_consent(self._dialect),
            [records.consent_row(newest[key]) for key in sorted(newest)],
        )
        return len(rows.all())

    async def saw_profile(self, party_id: str, profile_version: int) -> None:
        await self._session.execute(
            _saw_profile(self._dialect),
            {"party_id": party_id, "profile_version": profile_version},
        )


@functools.cache
def _saw_profile(dialect: str) -> sa.Executable:
    statement = insert_for(dialect, party_profile)
    return statement.on_conflict_do_update(
        index_elements=["party_id"],
        set_={"profile_version": statement.excluded.profile_version},
        where=party_profile.c.profile_version < statement.excluded.profile_version,
    )


# --- the customer's switches ------------------------------------------------------------------


@functools.cache
def _put_preferences(dialect: str) -> sa.Executable:
    statement = insert_for(dialect, contact_preferences)
    return statement.on_conflict_do_update(
        index_elements=["party_id"],
        set_={
            column: statement.excluded[column]
            for column in ("do_not_contact", "opted_out_channels", "version", "changed_at")
        },
        # The order-safety: only a higher version (a later change by the customer) replaces.
        where=contact_preferences.c.version < statement.excluded.version,
    ).returning(contact_preferences.c.party_id)


class SqlPreferenceStore(_Store):
    async def get(self, party_id: str) -> ContactPreferences | None:
        row = (
            await self._session.execute(
                sa.select(contact_preferences).where(contact_preferences.c.party_id == party_id)
            )
        ).first()
        if row is None:
            return None
        return ContactPreferences(
            party_id=row.party_id,
            do_not_contact=bool(row.do_not_contact),
            opted_out_channels=frozenset(
                Channel(name) for name in row.opted_out_channels.split(",") if name
            ),
            version=int(row.version),
            changed_at=as_utc(row.changed_at),
        )

    async def put(self, preferences: ContactPreferences) -> bool:
        rows = await self._session.execute(
            _put_preferences(self._dialect),
            {
                "party_id": preferences.party_id,
                "do_not_contact": preferences.do_not_contact,
                "opted_out_channels": ",".join(
                    sorted(channel.value for channel in preferences.opted_out_channels)
                ),
                "version": preferences.version,
                "changed_at": to_utc(preferences.changed_at),
            },
        )
        return bool(rows.all())


# --- the inbox --------------------------------------------------------------------------------


@functools.cache
def _add_inbox(dialect: str) -> sa.Executable:
    return insert_for(dialect, inbox_message).on_conflict_do_nothing()


class SqlInboxStore(_Store):
    def __init__(self, session: AsyncSession, dialect: str, ring: KeyRing) -> None:
        super().__init__(session, dialect)
        self._ring = ring

    async def add(self, entry: InboxEntry) -> None:
        # Added once: a redelivered send leaves the first (and its read mark) as it was.
        await self._session.execute(_add_inbox(self._dialect), records.inbox_row(entry, self._ring))

    async def page(
        self,
        party_id: str,
        before: tuple[dt.datetime, str] | None,
        limit: int,
        unread_only: bool,
    ) -> list[InboxEntry]:
        order = (inbox_message.c.created_at, inbox_message.c.notification_id)
        query = sa.select(inbox_message).where(inbox_message.c.party_id == party_id)
        if unread_only:
            query = query.where(inbox_message.c.read_at.is_(None))
        if before is not None:
            query = query.where(sa.tuple_(*order) < sa.tuple_(to_utc(before[0]), before[1]))
        rows = await self._session.execute(
            query.order_by(*(column.desc() for column in order)).limit(limit)
        )
        return [records.inbox_of(row, self._ring) for row in rows]

    async def unread_count(self, party_id: str) -> int:
        count = await self._session.scalar(
            sa.select(sa.func.count()).where(
                inbox_message.c.party_id == party_id, inbox_message.c.read_at.is_(None)
            )
        )
        return int(count or 0)

    async def known(self, party_id: str, notification_ids: Sequence[str]) -> set[str]:
        if not notification_ids:
            return set()
        ids = await self._session.scalars(
            sa.select(inbox_message.c.notification_id).where(
                inbox_message.c.party_id == party_id,
                inbox_message.c.notification_id.in_(list(notification_ids)),
            )
        )
        return set(ids)

    async def mark_read(
        self, party_id: str, notification_ids: Sequence[str], at: dt.datetime
    ) -> int:
        if not notification_ids:
            return 0
        result = await self._session.execute(
            sa.update(inbox_message)
            .where(
                inbox_message.c.party_id == party_id,
                inbox_message.c.notification_id.in_(list(notification_ids)),
                inbox_message.c.read_at.is_(None),
            )
            .values(read_at=to_utc(at))
        )
        return _rowcount(result)

    async def prune(self, before: dt.datetime, limit: int) -> int:
        return await delete_chunk(
            self._session,
            inbox_message,
            inbox_message.c.notification_id,
            inbox_message.c.created_at < to_utc(before),
            limit,
        )


# --- withdrawn decisions, webhook deliveries --------------------------------------------------


class SqlWithdrawalStore(_Store):
    async def add(self, withdrawal: DecisionWithdrawal) -> bool:
        result = await self._session.execute(
            insert_for(self._dialect, decision_withdrawal)
            .values(
                decision_id=withdrawal.decision_id,
                party_id=withdrawal.party_id,
                at=to_utc(withdrawal.at),
            )
            .on_conflict_do_nothing()
        )
        return _rowcount(result) == 1

    async def get(self, decision_id: str) -> DecisionWithdrawal | None:
        row = (
            await self._session.execute(
                sa.select(decision_withdrawal).where(
                    decision_withdrawal.c.decision_id == decision_id
                )
            )
        ).first()
        if row is None:
            return None
        return DecisionWithdrawal(row.decision_id, row.party_id, as_utc(row.at))

    async def prune(self, before: dt.datetime, limit: int) -> int:
        return await delete_chunk(
            self._session,
            decision_withdrawal,
            decision_withdrawal.c.decision_id,
            decision_withdrawal.c.at < to_utc(before),
            limit,
        )


def _delivery_key(provider: str, delivery_id: str) -> str:
    """The provider and its id, in the column's 255 characters (a provider's name is at most
    64, an id at most 200: a longer pair keeps the id's SHA-256 instead)."""
    key = f"{provider}:{delivery_id}"
    if len(key) <= _DELIVERY_KEY_LENGTH:
        return key
    return f"{provider}:sha256:{hashlib.sha256(delivery_id.encode()).hexdigest()}"


_DELIVERY_KEY_LENGTH = 255


class SqlWebhookDeliveryStore(_Store):
    async def first_time(self, provider: str, delivery_id: str, at: dt.datetime) -> bool:
        result = await self._session.execute(
            insert_for(self._dialect, webhook_delivery)
            .values(delivery_id=_delivery_key(provider, delivery_id), seen_at=to_utc(at))
            .on_conflict_do_nothing()
        )
        return _rowcount(result) == 1

    async def prune(self, before: dt.datetime, limit: int) -> int:
        return await delete_chunk(
            self._session,
            webhook_delivery,
            webhook_delivery.c.delivery_id,
            webhook_delivery.c.seen_at < to_utc(before),
            limit,
        )


# --- the unit of work -------------------------------------------------------------------------


class SqlNotificationsUnitOfWork(UnitOfWork):
    """The runtime's unit of work (state and outbox rows in one transaction, advisory locks,
    conflicts as ConcurrentUpdate) with the notifications' stores; `record` stages an event
    through `outgoing_event` (the transport's codec). `keys` seal the personal data stored."""

    def __init__(
        self,
        database: Database,
        outgoing_event: Callable[[OutboundEvent], OutgoingEvent],
        on_commit: Callable[[], None] | None,
        keys: FieldKeys,
    ) -> None:
        super().__init__(database, on_commit=on_commit)
        self._outgoing_event = outgoing_event
        self._ring = keys.ring
        self._after_commit: list[Callable[[], None]] = []

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        session, dialect = self.session, self.dialect
        self._notifications = SqlNotificationStore(session, dialect, self._ring)
        self._consents = SqlConsentStore(session, dialect)
        self._preferences = SqlPreferenceStore(session, dialect)
        self._inbox = SqlInboxStore(session, dialect, self._ring)
        self._withdrawals = SqlWithdrawalStore(session, dialect)
        self._webhook_deliveries = SqlWebhookDeliveryStore(session, dialect)
        return self

    @property
    def notifications(self) -> SqlNotificationStore:
        return self._notifications

    @property
    def consents(self) -> SqlConsentStore:
        return self._consents

    @property
    def preferences(self) -> SqlPreferenceStore:
        return self._preferences

    @property
    def inbox(self) -> SqlInboxStore:
        return self._inbox

    @property
    def withdrawals(self) -> SqlWithdrawalStore:
        return self._withdrawals

    @property
    def webhook_deliveries(self) -> SqlWebhookDeliveryStore:
        return self._webhook_deliveries

    def record(self, event: OutboundEvent) -> None:
        self.stage(self._outgoing_event(event))

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    async def commit(self) -> None:
        await super().commit()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._after_commit = []  # rolled back: none of them is called
        await super().__aexit__(exc_type, exc, tb)
