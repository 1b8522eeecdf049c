"""Each party's history (`party_history`): append-only."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_identity.domain.model import Decider, HistoryEntry, PartyChange, SourceRecordKey
from zhike_identity.storage.schema import party_history
from zhike_runtime.db import as_utc


class SqlHistoryStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def append(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        await self._session.execute(
            sa.insert(party_history),
            [
                {
                    "party_id": e.party_id,
                    "change": e.change.value,
                    "changed_at": e.at,
                    "decided_by": e.decided_by.value,
                    "steward": e.steward,
                    "model_version": e.model_version,
                    "other_party_id": e.other_party_id,
                    "source_records": [
                        [k.source_system, k.source_record_id] for k in e.source_records
                    ],
                    "reason": e.reason,
                }
                for e in entries
            ],
        )

    async def of_party(self, party_id: str) -> list[HistoryEntry]:
        rows = await self._session.execute(
            sa.select(party_history)
            .where(party_history.c.party_id == party_id)
            .order_by(party_history.c.entry_id)
        )
        return [
            HistoryEntry(
                party_id=row.party_id,
                change=PartyChange(row.change),
                at=as_utc(row.changed_at),
                decided_by=Decider(row.decided_by),
                model_version=row.model_version,
                steward=row.steward,
                other_party_id=row.other_party_id,
                source_records=tuple(SourceRecordKey(s, r) for s, r in row.source_records),
                reason=row.reason,
            )
            for row in rows
        ]
