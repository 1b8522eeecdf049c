"""Repositories and the unit of work over SQLAlchemy. Repositories never commit; the unit does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_identity.domain.model import DomainEvent, Party, PartyKey, SourceRecord, SourceRecordKey
from zhike_identity.storage.schema import party, party_key, source_record
from zhike_runtime.db import Database
from zhike_runtime.errors import ConcurrentUpdate
from zhike_runtime.events.outbox import OutgoingEvent, add_to_outbox


class SqlPartyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, party_id: str, at: dt.datetime) -> None:
        await self._session.execute(insert(party).values(party_id=party_id, created_at=at))

    async def get(self, party_id: str) -> Party | None:
        found = await self._session.scalar(
            select(party.c.party_id).where(party.c.party_id == party_id)
        )
        if found is None:
            return None
        rows = await self._session.execute(
            select(source_record.c.source_system, source_record.c.source_record_id)
            .where(source_record.c.party_id == party_id)
            .order_by(source_record.c.created_at, source_record.c.source_system)
        )
        return Party(
            party_id, tuple(SourceRecordKey(r.source_system, r.source_record_id) for r in rows)
        )


class SqlPartyKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find(self, key: PartyKey) -> str | None:
        return await self._session.scalar(
            select(party_key.c.party_id).where(
                party_key.c.kind == key.kind, party_key.c.value == key.value
            )
        )

    async def claim(self, key: PartyKey, party_id: str) -> None:
        await self._session.execute(
            insert(party_key).values(kind=key.kind, value=key.value, party_id=party_id)
        )


def _record_values(record: SourceRecord) -> dict[str, Any]:
    return {
        "full_name": record.full_name,
        "id_type": int(record.id_type) if record.id_type else None,
        "id_number": record.id_number,
        "phone": record.phone,
        "email": record.email,
        "birth_date": record.birth_date,
        "gender": int(record.gender) if record.gender else None,
        "address": record.address,
    }


class SqlSourceRecordRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def party_of(self, key: SourceRecordKey) -> str | None:
        return await self._session.scalar(
            select(source_record.c.party_id).where(
                source_record.c.source_system == key.source_system,
                source_record.c.source_record_id == key.source_record_id,
            )
        )

    async def add(self, record: SourceRecord, party_id: str, at: dt.datetime) -> None:
        await self._session.execute(
            insert(source_record).values(
                source_system=record.key.source_system,
                source_record_id=record.key.source_record_id,
                party_id=party_id,
                created_at=at,
                updated_at=at,
                **_record_values(record),
            )
        )

    async def update(self, record: SourceRecord, at: dt.datetime) -> None:
        await self._session.execute(
            update(source_record)
            .where(
                source_record.c.source_system == record.key.source_system,
                source_record.c.source_record_id == record.key.source_record_id,
            )
            .values(updated_at=at, **_record_values(record))
        )


class SqlIdentityUnitOfWork:
    """State and outbox rows in one transaction. A unique-key race surfaces as ConcurrentUpdate."""

    def __init__(
        self,
        database: Database,
        encode: Callable[[DomainEvent], OutgoingEvent],
        on_commit: Callable[[], None],
    ) -> None:
        self._database = database
        self._encode = encode
        self._on_commit = on_commit
        self._events: list[DomainEvent] = []

    async def __aenter__(self) -> Self:
        self._session = self._database.session()
        await self._session.begin()
        self.parties = SqlPartyRepository(self._session)
        self.party_keys = SqlPartyKeyRepository(self._session)
        self.source_records = SqlSourceRecordRepository(self._session)
        return self

    def record(self, event: DomainEvent) -> None:
        self._events.append(event)

    async def commit(self) -> None:
        await add_to_outbox(self._session, [self._encode(event) for event in self._events])
        await self._session.commit()
        if self._events:
            self._on_commit()
        self._events.clear()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._session.in_transaction():
                await self._session.rollback()
        finally:
            await self._session.close()
        if isinstance(exc, IntegrityError):
            raise ConcurrentUpdate(str(exc.orig)) from exc
