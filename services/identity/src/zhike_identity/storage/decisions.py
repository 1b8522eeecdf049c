"""A steward's link decisions (`link_decision`) and the review queue (`link_review`): both about
a pair of records, stored in key order so that (a, b) and (b, a) are one row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_identity.domain.model import LinkDecisionKind, LinkReview, ReviewStatus, SourceRecordKey
from zhike_identity.storage.schema import link_decision, link_review, source_record
from zhike_runtime.db import as_utc, insert_for
from zhike_runtime.ids import new_id


def _ordered(a: SourceRecordKey, b: SourceRecordKey) -> tuple[SourceRecordKey, SourceRecordKey]:
    return (
        (a, b)
        if (a.source_system, a.source_record_id) <= (b.source_system, b.source_record_id)
        else (b, a)
    )


class SqlDecisionStore:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    async def for_record(self, key: SourceRecordKey) -> dict[SourceRecordKey, LinkDecisionKind]:
        c = link_decision.c
        rows = await self._session.execute(
            sa.select(link_decision).where(
                sa.or_(
                    sa.and_(c.a_system == key.source_system, c.a_record_id == key.source_record_id),
                    sa.and_(c.b_system == key.source_system, c.b_record_id == key.source_record_id),
                )
            )
        )
        result: dict[SourceRecordKey, LinkDecisionKind] = {}
        for row in rows:
            a = SourceRecordKey(row.a_system, row.a_record_id)
            other = SourceRecordKey(row.b_system, row.b_record_id) if a == key else a
            result[other] = LinkDecisionKind(row.decision)
        return result

    async def never_among(
        self, party_ids: Sequence[str]
    ) -> list[tuple[SourceRecordKey, SourceRecordKey]]:
        if not party_ids:
            return []
        c = link_decision.c
        a, b = source_record.alias("a"), source_record.alias("b")
        parties = list(party_ids)
        # Joined by party in the database: listing the parties' members as (system, id) pairs
        # made a statement of hundreds of parameters, prepared anew for each length.
        rows = await self._session.execute(
            sa.select(c.a_system, c.a_record_id, c.b_system, c.b_record_id)
            .select_from(
                link_decision.join(
                    a,
                    sa.and_(a.c.source_system == c.a_system, a.c.source_record_id == c.a_record_id),
                ).join(
                    b,
                    sa.and_(b.c.source_system == c.b_system, b.c.source_record_id == c.b_record_id),
                )
            )
            .where(
                c.decision == LinkDecisionKind.NEVER.value,
                a.c.party_id.in_(parties),
                b.c.party_id.in_(parties),
            )
        )
        return [
            (SourceRecordKey(r.a_system, r.a_record_id), SourceRecordKey(r.b_system, r.b_record_id))
            for r in rows
        ]

    async def record(
        self,
        a: SourceRecordKey,
        b: SourceRecordKey,
        kind: LinkDecisionKind,
        steward: str,
        reason: str,
        at: dt.datetime,
    ) -> None:
        first, second = _ordered(a, b)
        values = {
            "a_system": first.source_system,
            "a_record_id": first.source_record_id,
            "b_system": second.source_system,
            "b_record_id": second.source_record_id,
            "decision": kind.value,
            "steward": steward,
            "reason": reason,
            "decided_at": at,
        }
        statement = insert_for(self._dialect, link_decision).values(values)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["a_system", "a_record_id", "b_system", "b_record_id"],
                set_={
                    "decision": kind.value,
                    "steward": steward,
                    "reason": reason,
                    "decided_at": at,
                },
            )
        )


def _review(row: Any) -> LinkReview:
    return LinkReview(
        review_id=row.review_id,
        record_a=SourceRecordKey(row.a_system, row.a_record_id),
        record_b=SourceRecordKey(row.b_system, row.b_record_id),
        weight=row.match_weight,
        status=ReviewStatus(row.status),
        created_at=as_utc(row.created_at),
    )


class SqlReviewStore:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    async def open(
        self, a: SourceRecordKey, b: SourceRecordKey, weight: float, at: dt.datetime
    ) -> None:
        first, second = _ordered(a, b)
        await self._session.execute(
            insert_for(self._dialect, link_review)
            .values(
                review_id=new_id(),
                a_system=first.source_system,
                a_record_id=first.source_record_id,
                b_system=second.source_system,
                b_record_id=second.source_record_id,
                match_weight=weight,
                status=ReviewStatus.OPEN.value,
                created_at=at,
            )
            .on_conflict_do_nothing()
        )

    async def get(self, review_id: str) -> LinkReview | None:
        row = (
            await self._session.execute(
                sa.select(link_review).where(link_review.c.review_id == review_id)
            )
        ).first()
        return _review(row) if row else None

    async def list_open(
        self, limit: int, after: tuple[dt.datetime, str] | None
    ) -> list[LinkReview]:
        c = link_review.c
        query = sa.select(link_review).where(c.status == ReviewStatus.OPEN.value)
        if after is not None:
            query = query.where(sa.tuple_(c.created_at, c.review_id) > sa.tuple_(*after))
        rows = await self._session.execute(query.order_by(c.created_at, c.review_id).limit(limit))
        return [_review(row) for row in rows]

    async def close(
        self, review_id: str, status: ReviewStatus, steward: str, at: dt.datetime
    ) -> None:
        await self._session.execute(
            sa.update(link_review)
            .where(link_review.c.review_id == review_id)
            .values(status=status.value, steward=steward, resolved_at=at)
        )
