from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_profile.domain.model import LinkedSourceRecord, Profile
from zhike_profile.storage.schema import profile, profile_source_record
from zhike_runtime.db import Database, as_utc, insert_for


class SqlProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._dialect = session.get_bind().dialect.name

    async def get(self, party_id: str) -> Profile | None:
        row = (
            await self._session.execute(select(profile).where(profile.c.party_id == party_id))
        ).first()
        if row is None:
            return None
        records = await self._session.execute(
            select(profile_source_record)
            .where(profile_source_record.c.party_id == party_id)
            .order_by(profile_source_record.c.linked_at, profile_source_record.c.source_system)
        )
        return Profile(
            party_id=row.party_id,
            source_records=tuple(
                LinkedSourceRecord(r.source_system, r.source_record_id, as_utc(r.linked_at))
                for r in records
            ),
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
            display_name=row.display_name,
        )

    async def ensure(self, party_id: str, at: dt.datetime) -> None:
        await self._session.execute(
            insert_for(self._dialect, profile)
            .values(party_id=party_id, created_at=at, updated_at=at)
            .on_conflict_do_nothing()
        )

    async def link(self, party_id: str, record: LinkedSourceRecord) -> None:
        statement = insert_for(self._dialect, profile_source_record).values(
            source_system=record.source_system,
            source_record_id=record.source_record_id,
            party_id=party_id,
            linked_at=record.linked_at,
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["source_system", "source_record_id"],
                set_={"party_id": party_id, "linked_at": record.linked_at},
            )
        )
        await self._session.execute(
            update(profile)
            .where(profile.c.party_id == party_id)
            .values(updated_at=record.linked_at)
        )

    async def move_records(
        self, keys: list[tuple[str, str]], party_id: str, at: dt.datetime
    ) -> None:
        for source_system, source_record_id in keys:
            await self.link(party_id, LinkedSourceRecord(source_system, source_record_id, at))

    async def absorb(self, survivor: str, retired: str, at: dt.datetime) -> None:
        await self._session.execute(
            update(profile_source_record)
            .where(profile_source_record.c.party_id == retired)
            .values(party_id=survivor)
        )
        await self._session.execute(
            update(profile).where(profile.c.party_id == retired).values(merged_into=survivor)
        )
        await self._session.execute(
            update(profile)
            .where(profile.c.party_id == survivor, profile.c.updated_at < at)
            .values(updated_at=at)
        )

    async def forwarded_to(self, party_id: str) -> str | None:
        value = await self._session.scalar(
            select(profile.c.merged_into).where(profile.c.party_id == party_id)
        )
        return str(value) if value else None

    async def set_display_name(self, party_id: str, name: str, at: dt.datetime) -> None:
        await self._session.execute(
            update(profile).where(profile.c.party_id == party_id).values(display_name=name)
        )


def profile_reader(
    database: Database,
) -> Callable[[], AbstractAsyncContextManager[SqlProfileRepository]]:
    """Read-only access for queries: a session per call, no transaction held open."""

    @asynccontextmanager
    async def open_repository() -> AsyncIterator[SqlProfileRepository]:
        async with database.session() as session:
            yield SqlProfileRepository(session)

    return open_repository
