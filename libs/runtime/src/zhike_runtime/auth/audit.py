"""The audit log: one row per unmasked read of personal data, per steward or admin write, per
search by personal data, and per refused attempt. Each service keeps it in its own database
(table `audit_record`, created by the runtime's migrations) for `retention` (≥ 3 years by
default), read back with `zhike audit`.

An unmasked read is audited *before* its response leaves: if the record cannot be written the
caller gets UNAVAILABLE, not the data.

What a record holds is partly the caller's own text (a refused call is audited with the party
id it asked for, unvalidated), so `format_entries` escapes every control character: a record
prints as one line of tab-separated fields, and no field can forge another record or move a
terminal's cursor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from zhike_runtime.db import Database, as_utc, delete_in_chunks, to_utc
from zhike_runtime.terminal import printable

log = logging.getLogger(__name__)

audit_metadata = sa.MetaData()

audit_record = sa.Table(
    "audit_record",
    audit_metadata,
    sa.Column(
        "record_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("roles", sa.String(500), nullable=False),
    sa.Column("method", sa.String(255), nullable=False),
    sa.Column("party_id", sa.String(64), nullable=False),
    sa.Column("fields", sa.String(500), nullable=False),
    sa.Column("purpose", sa.String(200), nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
)


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    roles: tuple[str, ...]
    method: str
    party_id: str
    fields: tuple[str, ...]
    purpose: str
    outcome: str  # OK, or the status code name of a refusal or failure
    trace_id: str = ""
    recorded_at: dt.datetime | None = None


@dataclass(frozen=True)
class AuditPage:
    """Records in the order they were written, at most a read's limit of them."""

    entries: list[AuditEntry]
    # When more records match past the limit: the id of the last entry, to read on after it.
    next_after_id: int | None = None


def _text(value: str, limit: int) -> str:
    """As stored: at most `limit` characters, and a NUL (which PostgreSQL refuses in text)
    replaced. A refused call is audited with the party id it asked for, before any validation:
    with a NUL in it, the audit's failure would have turned NOT_FOUND into INTERNAL."""
    return value[:limit].replace("\x00", "\N{REPLACEMENT CHARACTER}")


class AuditLog:
    def __init__(self, database: Database, retention: dt.timedelta) -> None:
        self._database = database
        self.retention = retention
        # PostgreSQL: a record is one INSERT, committed (and flushed) as it runs, so it needs no
        # BEGIN and COMMIT round trips of its own (it is paid on every audited read).
        self._autocommit = (
            database.engine.execution_options(isolation_level="AUTOCOMMIT")
            if database.is_postgres
            else None
        )

    async def append(self, entry: AuditEntry) -> None:
        statement = sa.insert(audit_record).values(
            recorded_at=to_utc(entry.recorded_at or dt.datetime.now(dt.UTC)),
            actor=_text(entry.actor, 255),
            roles=_text(",".join(entry.roles), 500),
            method=_text(entry.method, 255),
            party_id=_text(entry.party_id, 64),
            fields=_text(",".join(entry.fields), 500),
            purpose=_text(entry.purpose, 200),
            outcome=_text(entry.outcome, 64),
            trace_id=_text(entry.trace_id, 32),
        )
        if self._autocommit is not None:
            async with self._autocommit.connect() as connection:
                await connection.execute(statement)
            return
        async with self._database.session() as session, session.begin():
            await session.execute(statement)

    async def read(
        self,
        *,
        party_id: str | None = None,
        actor: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after_id: int | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        page = await self.read_page(
            party_id=party_id,
            actor=actor,
            since=since,
            until=until,
            after_id=after_id,
            limit=limit,
        )
        return page.entries

    async def read_page(
        self,
        *,
        party_id: str | None = None,
        actor: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after_id: int | None = None,
        limit: int = 1000,
    ) -> AuditPage:
        """The first `limit` matching records after record `after_id`, oldest first, with
        `since` inclusive and `until` exclusive; the page says whether more match."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        # One row more than asked for tells a cut page from a complete one.
        query = sa.select(audit_record).order_by(audit_record.c.record_id).limit(limit + 1)
        if party_id is not None:
            query = query.where(audit_record.c.party_id == party_id)
        if actor is not None:
            query = query.where(audit_record.c.actor == actor)
        if since is not None:
            query = query.where(audit_record.c.recorded_at >= to_utc(since))
        if until is not None:
            query = query.where(audit_record.c.recorded_at < to_utc(until))
        if after_id is not None:
            query = query.where(audit_record.c.record_id > after_id)
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        entries = [
            AuditEntry(
                actor=row.actor,
                roles=_split(row.roles),
                method=row.method,
                party_id=row.party_id,
                fields=_split(row.fields),
                purpose=row.purpose,
                outcome=row.outcome,
                trace_id=row.trace_id,
                recorded_at=as_utc(row.recorded_at),
            )
            for row in rows[:limit]
        ]
        more = len(rows) > limit
        return AuditPage(entries, int(rows[limit - 1].record_id) if more else None)

    async def expire(self, now: dt.datetime | None = None) -> int:
        """Deletes records older than the retention period, in chunks; returns how many."""
        cutoff = (now or dt.datetime.now(dt.UTC)) - self.retention
        return await delete_in_chunks(
            self._database,
            audit_record,
            audit_record.c.record_id,
            audit_record.c.recorded_at < to_utc(cutoff),
        )

    async def run_retention(self, interval_seconds: float = 3600.0) -> None:
        while True:
            try:
                removed = await self.expire()
            except Exception:
                log.exception("audit retention pass failed; the next pass retries")
            else:
                if removed:
                    log.info("audit records past retention removed", extra={"removed": removed})
            await asyncio.sleep(interval_seconds)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.split(",") if part)


def format_entries(entries: Sequence[AuditEntry]) -> list[str]:
    """One line per record, its fields separated by tabs, none holding a tab or a newline."""
    return [
        "\t".join(
            printable(field)
            for field in (
                e.recorded_at.isoformat() if e.recorded_at else "",
                e.actor,
                ",".join(e.roles),
                e.method,
                e.party_id,
                ",".join(e.fields),
                e.purpose,
                e.outcome,
            )
        )
        for e in entries
    ]
