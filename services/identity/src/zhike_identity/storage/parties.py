"""Parties (`party`): their state, and their members in one round trip."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_identity.domain.model import (
    IdType,
    LinkDecisionKind,
    PartyMember,
    PartyState,
    SourceRecordKey,
)
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.schema import link_decision, party, source_record
from zhike_runtime.db import as_utc


def _never_link_names(system: sa.ColumnElement[str], record_id: sa.ColumnElement[str]) -> Any:
    d = link_decision.c
    return (
        sa.select(sa.literal(1))
        .where(
            d.decision == LinkDecisionKind.NEVER.value,
            system == source_record.c.source_system,
            record_id == source_record.c.source_record_id,
        )
        .exists()
    )


_PARTIES_WITH_MEMBERS = (
    sa.select(
        party.c.party_id,
        party.c.created_at,
        party.c.retired_into,
        source_record.c.source_system,
        source_record.c.source_record_id,
        source_record.c.id_type,
        source_record.c.id_number,
        sa.or_(
            _never_link_names(link_decision.c.a_system, link_decision.c.a_record_id),
            _never_link_names(link_decision.c.b_system, link_decision.c.b_record_id),
        ).label("kept_apart"),
    )
    .select_from(party.outerjoin(source_record, source_record.c.party_id == party.c.party_id))
    .where(party.c.party_id.in_(sa.bindparam("party_ids", expanding=True)))
    .order_by(party.c.party_id, source_record.c.source_system, source_record.c.source_record_id)
)


class SqlPartyStore:
    def __init__(self, session: AsyncSession, protection: RecordProtection) -> None:
        self._session = session
        self._protection = protection

    async def add(self, party_id: str, at: dt.datetime) -> None:
        await self._session.execute(sa.insert(party).values(party_id=party_id, created_at=at))

    async def get(self, party_id: str) -> PartyState | None:
        found = await self.get_many([party_id])
        return found.get(party_id)

    async def get_many(self, party_ids: Sequence[str]) -> dict[str, PartyState]:
        if not party_ids:
            return {}
        rows = await self._session.execute(
            sa.select(party).where(party.c.party_id.in_(list(party_ids)))
        )
        return {
            row.party_id: PartyState(row.party_id, as_utc(row.created_at), row.retired_into)
            for row in rows
        }

    async def with_members(
        self, party_ids: Sequence[str]
    ) -> tuple[dict[str, PartyState], list[PartyMember]]:
        """The parties and their members in one round trip, each member flagged when a steward's
        "never link" names it (rare: only then are the decisions themselves read)."""
        if not party_ids:
            return {}, []
        rows = await self._session.execute(_PARTIES_WITH_MEMBERS, {"party_ids": list(party_ids)})
        states: dict[str, PartyState] = {}
        members: list[PartyMember] = []
        for row in rows:
            states[row.party_id] = PartyState(
                row.party_id, as_utc(row.created_at), row.retired_into
            )
            if row.source_system is None:
                continue  # a party without records (merged away)
            resident_id = None
            if row.id_type == IdType.RESIDENT_ID and row.id_number:
                resident_id = self._protection.open_id_number(
                    row.source_system, row.source_record_id, row.id_number
                )
            members.append(
                PartyMember(
                    SourceRecordKey(row.source_system, row.source_record_id),
                    row.party_id,
                    resident_id,
                    bool(row.kept_apart),
                )
            )
        return states, members

    async def forwarding_into(self, party_ids: Sequence[str]) -> list[PartyState]:
        if not party_ids:
            return []
        rows = await self._session.execute(
            sa.select(party).where(party.c.retired_into.in_(list(party_ids)))
        )
        return [PartyState(row.party_id, as_utc(row.created_at), row.retired_into) for row in rows]

    async def retire(self, party_id: str, into: str, at: dt.datetime) -> int:
        version = await self._session.scalar(
            sa.update(party)
            .where(party.c.party_id == party_id)
            .values(
                retired_into=into,
                retired_at=at,
                forwarding_version=party.c.forwarding_version + 1,
            )
            .returning(party.c.forwarding_version)
        )
        if version is None:
            raise LookupError(f"no party {party_id} to retire")
        return int(version)
