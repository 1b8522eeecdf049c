"""The profile's stores over SQLAlchemy Core, and its unit of work.

Every write of a source fact is conditional on the version it carries (`… WHERE seq < :new`),
so the stores may be handed events in any order, twice, or late: the outcome is the one the
newest fact of each kind gives. Repositories never commit; the unit of work does.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from zhike_profile.domain import read_model
from zhike_profile.domain.facts import (
    NOTIFICATIONS_SYSTEM,
    CardTier,
    Channel,
    Consent,
    ConsentEvidence,
    CustomerRisk,
    Direction,
    Interaction,
    InteractionKind,
    MessageChannel,
    Preferences,
    ProductLine,
    ProductRisk,
    Purpose,
    QuietHours,
    RiskAssessment,
    SentMessage,
    SourceKey,
)
from zhike_profile.domain.model import LinkedSourceRecord, Profile, ProfileRow, SearchCriteria
from zhike_profile.domain.party_facts import (
    StoredAccount,
    StoredActivity,
    StoredBalance,
    StoredConsent,
    StoredFacts,
    StoredPreferences,
    StoredRisk,
)
from zhike_profile.domain.ports import (
    Link,
    PartyState,
    Publication,
    StoredInteraction,
    StoredProfile,
)
from zhike_profile.domain.read_model import ReadModel
from zhike_profile.domain.snapshot import ProfileChanged, from_json, to_json
from zhike_profile.domain.source_events import (
    AddTransaction,
    CloseAccount,
    OpenAccount,
    RecordInteraction,
    RecordMessage,
    SetBalance,
    SetCardTier,
    SetConsent,
    SetOverdue,
    SetPreferences,
    SetProductRisk,
    SetRiskAssessment,
    SourceEvent,
)
from zhike_profile.storage.schema import (
    account,
    account_balance,
    balance_history,
    consent,
    interaction,
    monthly_activity,
    preference,
    profile,
    profile_segment,
    profile_source_record,
    risk_assessment,
)
from zhike_runtime.db import Database, as_utc, insert_for
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.unit_of_work import UnitOfWork

# Interactions a party's facts carry (the most recent, within the activity window): enough for
# recency and frequency; ListInteractions pages through all of them.
MAX_FACT_INTERACTIONS = 1000


def _keys_clause(table: sa.Table, keys: Sequence[SourceKey]) -> sa.ColumnElement[bool]:
    return sa.tuple_(table.c.source_system, table.c.source_record_id).in_(
        [(k.source_system, k.source_record_id) for k in keys]
    )


def _key(row: Any) -> SourceKey:
    return _source_key(row.source_system, row.source_record_id)


@functools.lru_cache(maxsize=65536)
def _source_key(system: str, record_id: str) -> SourceKey:
    """Keys are values: one instance per record serves every row of it (reads build many)."""
    return SourceKey(system, record_id)


# Statements are built once: SQLAlchemy caches their compiled form.


def _one_of_parties(column: sa.ColumnElement[str], dialect: str) -> sa.ColumnElement[bool]:
    """`column` is one of the `party_ids` parameter's. On PostgreSQL one array parameter, so
    the statement (and its server-side prepared form) is the same for any number of parties;
    elsewhere an IN list expanded per execution."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam("party_ids", type_=postgresql.ARRAY(sa.String)))
    return column.in_(sa.bindparam("party_ids", expanding=True))


# A profile row with its records, in one read: a row per record (at least one, with NULLs for a
# party without records); the read model as text, decoded once, not on every row.
_PROFILE_READ = (
    sa.select(
        profile.c.party_id,
        profile.c.created_at,
        profile.c.updated_at,
        profile.c.merged_into,
        profile.c.forwarding_ended,
        profile.c.display_name,
        profile.c.birth_date,
        profile.c.version,
        sa.cast(profile.c.view, sa.Text).label("view"),
        profile_source_record.c.source_system,
        profile_source_record.c.source_record_id,
        profile_source_record.c.linked_at,
    )
    .select_from(
        profile.outerjoin(
            profile_source_record, profile_source_record.c.party_id == profile.c.party_id
        )
    )
    .where(profile.c.party_id == sa.bindparam("party_id"))
    .order_by(
        profile_source_record.c.linked_at,
        profile_source_record.c.source_system,
        profile_source_record.c.source_record_id,
    )
)


@functools.cache
def _states(dialect: str) -> sa.Select[Any]:
    return sa.select(
        profile.c.party_id,
        profile.c.version,
        profile.c.snapshot,
        profile.c.merged_into,
        profile.c.birth_date,
        profile.c.assessed_on,
    ).where(_one_of_parties(profile.c.party_id, dialect))


@functools.cache
def _delete_segments(dialect: str) -> sa.Delete:
    return sa.delete(profile_segment).where(_one_of_parties(profile_segment.c.party_id, dialect))


_VIEW = sa.bindparam("b_view", type_=profile.c.view.type)
# The read model's day; a party merged away (no read model) keeps the day it had.
_ASSESSED_ON = sa.func.coalesce(
    sa.bindparam("b_assessed_on", type_=sa.Date()), profile.c.assessed_on
)
_PUBLISH = (
    sa.update(profile)
    .where(profile.c.party_id == sa.bindparam("b_party_id"))
    .values(
        version=sa.bindparam("b_version"),
        snapshot=sa.bindparam("b_snapshot", type_=profile.c.snapshot.type),
        tier=sa.bindparam("b_tier"),
        value_band=sa.bindparam("b_value_band"),
        total_assets_cny_minor=sa.bindparam("b_total_assets"),
        risk_expires_on=sa.bindparam("b_risk_expires_on"),
        view=_VIEW,
        assessed_on=_ASSESSED_ON,
        updated_at=sa.bindparam("b_at"),
    )
)
_PUBLISH_VIEW = (
    sa.update(profile)
    .where(profile.c.party_id == sa.bindparam("b_party_id"))
    .values(view=_VIEW, assessed_on=_ASSESSED_ON)
)


def _view(model: ReadModel | None) -> dict[str, Any] | None:
    return None if model is None else read_model.to_json(model)


def _assessed_on(model: ReadModel | None) -> dt.date | None:
    return None if model is None else model.as_of


class SqlPartyStore:
    """Profiles, their links to source records, and what each last published."""

    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    async def ensure(self, party_id: str, at: dt.datetime) -> None:
        # Created at the earliest time any of its events gives, whichever arrives first.
        statement = insert_for(self._dialect, profile).values(
            party_id=party_id, created_at=at, updated_at=at
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["party_id"],
                set_={"created_at": statement.excluded.created_at},
                where=profile.c.created_at > statement.excluded.created_at,
            )
        )

    async def read(self, party_id: str, *, with_view: bool = True) -> StoredProfile | None:
        rows = (await self._session.execute(_PROFILE_READ, {"party_id": party_id})).all()
        if not rows:
            return None
        row = rows[0]
        linked = [r for r in rows if r.source_system is not None]
        return StoredProfile(
            profile=Profile(
                party_id=row.party_id,
                source_records=tuple(
                    LinkedSourceRecord(r.source_system, r.source_record_id, as_utc(r.linked_at))
                    for r in linked
                    if r.source_system != NOTIFICATIONS_SYSTEM
                ),
                created_at=as_utc(row.created_at),
                updated_at=as_utc(row.updated_at),
                display_name=row.display_name,
                version=int(row.version),
                # In key order: their link time is that of whichever message arrived first.
                message_records=tuple(
                    sorted(_key(r) for r in linked if r.source_system == NOTIFICATIONS_SYSTEM)
                ),
            ),
            merged_into=row.merged_into,
            forwarding_ended=bool(row.forwarding_ended),
            birth_date=row.birth_date,
            view=(
                read_model.from_json(row.party_id, json.loads(row.view))
                if with_view and row.view
                else None
            ),
        )

    async def states(self, party_ids: Sequence[str]) -> dict[str, PartyState]:
        if not party_ids:
            return {}
        rows = await self._session.execute(_states(self._dialect), {"party_ids": list(party_ids)})
        return {
            row.party_id: PartyState(
                int(row.version),
                from_json(row.snapshot),
                row.merged_into,
                row.birth_date,
                row.assessed_on,
            )
            for row in rows
        }

    async def forwarded_to(self, party_id: str) -> str | None:
        value = await self._session.scalar(
            sa.select(profile.c.merged_into).where(profile.c.party_id == party_id)
        )
        return str(value) if value else None

    async def retire(
        self, party_id: str, into: str, at: dt.datetime, version: int, *, ended: bool = False
    ) -> bool:
        result = await self._session.execute(
            sa.update(profile)
            .where(
                profile.c.party_id == party_id,
                sa.or_(profile.c.merged_into.is_(None), profile.c.forwarding_version < version),
            )
            .values(
                merged_into=into,
                forwarding_version=version,
                forwarding_ended=ended,
                updated_at=at,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def forwarding_into(self, party_ids: Sequence[str]) -> list[str]:
        if not party_ids:
            return []
        rows = await self._session.scalars(
            sa.select(profile.c.party_id).where(profile.c.merged_into.in_(list(party_ids)))
        )
        return sorted(rows)

    async def links(self, keys: Sequence[SourceKey]) -> dict[SourceKey, Link]:
        if not keys:
            return {}
        rows = await self._session.execute(
            sa.select(profile_source_record).where(_keys_clause(profile_source_record, keys))
        )
        return {
            _key(r): Link(r.party_id, r.linked_party_id, int(r.link_version), as_utc(r.linked_at))
            for r in rows
        }

    async def set_link(
        self, key: SourceKey, linked_party_id: str, party_id: str, version: int, at: dt.datetime
    ) -> None:
        values = {
            "party_id": party_id,
            "linked_party_id": linked_party_id,
            "link_version": version,
            "linked_at": at,
        }
        statement = insert_for(self._dialect, profile_source_record).values(
            source_system=key.source_system, source_record_id=key.source_record_id, **values
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["source_system", "source_record_id"], set_=values
            )
        )

    async def reassign(
        self, linked_party_ids: Sequence[str], from_party_id: str, to_party_id: str
    ) -> None:
        await self._session.execute(
            sa.update(profile_source_record)
            .where(
                profile_source_record.c.party_id == from_party_id,
                profile_source_record.c.linked_party_id.in_(list(linked_party_ids)),
            )
            .values(party_id=to_party_id)
        )

    async def set_golden_record(
        self, party_id: str, name: str, birth_date: dt.date | None, at: dt.datetime
    ) -> bool:
        held = await self.birth_date(party_id)  # the caller holds the party's lock
        result = await self._session.execute(
            sa.update(profile)
            .where(
                profile.c.party_id == party_id,
                sa.or_(profile.c.display_name_at.is_(None), profile.c.display_name_at < at),
            )
            .values(display_name=name, birth_date=birth_date, display_name_at=at)
        )
        applied = bool(result.rowcount)  # type: ignore[attr-defined]
        return applied and held != birth_date

    async def birth_date(self, party_id: str) -> dt.date | None:
        value: dt.date | None = await self._session.scalar(
            sa.select(profile.c.birth_date).where(profile.c.party_id == party_id)
        )
        return value

    async def publish(self, publications: Sequence[Publication], at: dt.datetime) -> None:
        changed = [p for p in publications if p.changed]
        if changed:
            await self._session.execute(
                _PUBLISH,
                [
                    {
                        "b_party_id": p.party_id,
                        "b_version": p.version,
                        "b_snapshot": to_json(p.snapshot),
                        "b_tier": p.snapshot.tier.name if p.snapshot.tier else None,
                        "b_value_band": p.snapshot.value_band,
                        "b_total_assets": p.snapshot.total_assets_cny_minor,
                        "b_risk_expires_on": (
                            p.snapshot.risk.expires_on
                            if p.snapshot.risk.effective_level is not None
                            else None
                        ),
                        "b_view": _view(p.view),
                        "b_assessed_on": _assessed_on(p.view),
                        "b_at": at,
                    }
                    for p in changed
                ],
            )
            await self._session.execute(
                _delete_segments(self._dialect), {"party_ids": [p.party_id for p in changed]}
            )
            segments = [
                {"segment": name, "party_id": p.party_id}
                for p in changed
                for name in sorted(p.snapshot.segments)
            ]
            if segments:
                await self._session.execute(sa.insert(profile_segment), segments)
        viewed = [p for p in publications if not p.changed]
        if viewed:
            await self._session.execute(
                _PUBLISH_VIEW,
                [
                    {
                        "b_party_id": p.party_id,
                        "b_view": _view(p.view),
                        "b_assessed_on": _assessed_on(p.view),
                    }
                    for p in viewed
                ],
            )

    async def risk_expiring(self, on: dt.date, limit: int) -> list[str]:
        rows = await self._session.execute(
            sa.select(profile.c.party_id)
            .where(profile.c.risk_expires_on <= on, profile.c.merged_into.is_(None))
            .order_by(profile.c.risk_expires_on, profile.c.party_id)
            .limit(limit)
        )
        return [row.party_id for row in rows]

    async def assessed_before(self, day: dt.date, after: str, limit: int) -> list[str]:
        rows = await self._session.execute(
            sa.select(profile.c.party_id)
            .where(
                profile.c.assessed_on < day,
                profile.c.merged_into.is_(None),
                profile.c.party_id > after,
            )
            .order_by(profile.c.party_id)
            .limit(limit)
        )
        return [row.party_id for row in rows]

    async def search(
        self, criteria: SearchCriteria, after: str | None, limit: int
    ) -> list[ProfileRow]:
        query = sa.select(
            profile.c.party_id,
            profile.c.display_name,
            profile.c.tier,
            profile.c.value_band,
            profile.c.total_assets_cny_minor,
        ).where(profile.c.merged_into.is_(None), profile.c.snapshot.is_not(None))
        if criteria.tier:
            query = query.where(profile.c.tier == criteria.tier)
        if criteria.value_band:
            query = query.where(profile.c.value_band == criteria.value_band)
        if criteria.min_total_assets_cny_minor is not None:
            query = query.where(
                profile.c.total_assets_cny_minor >= criteria.min_total_assets_cny_minor
            )
        if criteria.max_total_assets_cny_minor is not None:
            query = query.where(
                profile.c.total_assets_cny_minor <= criteria.max_total_assets_cny_minor
            )
        if criteria.segment:
            query = query.where(
                sa.exists().where(
                    profile_segment.c.party_id == profile.c.party_id,
                    profile_segment.c.segment == criteria.segment,
                )
            )
        if after is not None:
            query = query.where(profile.c.party_id > after)
        rows = (await self._session.execute(query.order_by(profile.c.party_id).limit(limit))).all()
        segments: dict[str, list[str]] = {}
        if rows:
            found = await self._session.execute(
                sa.select(profile_segment)
                .where(profile_segment.c.party_id.in_([r.party_id for r in rows]))
                .order_by(profile_segment.c.segment)
            )
            for row in found:
                segments.setdefault(row.party_id, []).append(row.segment)
        return [
            ProfileRow(
                party_id=r.party_id,
                display_name=r.display_name,
                tier=r.tier or "",
                value_band=r.value_band or "",
                segments=tuple(segments.get(r.party_id, ())),
                total_assets_cny_minor=int(r.total_assets_cny_minor or 0),
            )
            for r in rows
        ]


class SqlFactStore:
    """Source facts per source record, each kind versioned by its own sequence."""

    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self._session = session
        self._dialect = dialect

    # --- writes -----------------------------------------------------------------------------

    async def apply(self, events: Sequence[tuple[SourceEvent, dt.date]]) -> None:
        rows = _FactRows()
        for event, month in events:
            rows.add(event, month)
        for statement, parameters in rows.writes(_fact_writes(self._dialect)):
            await self._session.execute(statement, parameters)

    # --- reads ------------------------------------------------------------------------------

    async def _by_party(
        self, query: sa.Select[Any] | sa.CompoundSelect[Any], parameters: dict[str, Any]
    ) -> dict[str, list[Any]]:
        """The rows (party_id first, then the columns a converter takes) by party."""
        found: dict[str, list[Any]] = defaultdict(list)
        for row in (await self._session.execute(query, parameters)).all():
            found[row[0]].append(row)
        return found

    async def stored(
        self,
        party_ids: Sequence[str],
        since: dt.datetime,
        *,
        interactions_since: dt.datetime | None = None,
    ) -> dict[str, StoredFacts]:
        if not party_ids:
            return {}
        ids = {"party_ids": list(party_ids)}
        reads = _fact_reads(self._dialect)
        accounts = await self._by_party(reads.accounts, ids)
        balances = await self._by_party(reads.balances, ids)
        history = await self._by_party(reads.history, ids | {"since": since})
        activity = await self._by_party(
            reads.activity, ids | {"first_month": since.date() - dt.timedelta(days=31)}
        )
        interactions = await self._by_party(
            reads.interactions, ids | {"since": interactions_since or since}
        )
        consents = await self._by_party(reads.consents, ids)
        preferences = await self._by_party(reads.preferences, ids)
        risks = await self._by_party(reads.risks, ids)
        found = (accounts, balances, history, activity, interactions, consents, preferences, risks)
        return {
            party_id: StoredFacts(
                accounts=tuple(_account(*r) for r in accounts.get(party_id, ())),
                balances=tuple(_balance(*r) for r in balances.get(party_id, ())),
                history=tuple(_balance(*r) for r in history.get(party_id, ())),
                activity=tuple(_activity(*r) for r in activity.get(party_id, ())),
                interactions=tuple(_interaction(*r) for r in interactions.get(party_id, ())),
                consents=tuple(_consent(*r) for r in consents.get(party_id, ())),
                preferences=tuple(_preferences(*r) for r in preferences.get(party_id, ())),
                risks=tuple(_risk(*r) for r in risks.get(party_id, ())),
            )
            for party_id in sorted({p for rows in found for p in rows})
        }

    async def interactions(
        self,
        records: Sequence[SourceKey],
        limit: int,
        after: tuple[dt.datetime, str, str] | None,
    ) -> list[StoredInteraction]:
        order = (interaction.c.occurred_at, interaction.c.source_system, interaction.c.event_id)
        query = sa.select(interaction).where(_keys_clause(interaction, records))
        if after is not None:
            query = query.where(sa.tuple_(*order) < sa.tuple_(*after))
        ordered = query.order_by(*(column.desc() for column in order)).limit(limit)
        rows = (await self._session.execute(ordered)).all()
        return [
            StoredInteraction(
                _interaction(
                    "",
                    r.source_system,
                    r.source_record_id,
                    r.kind,
                    r.occurred_at,
                    r.branch_code,
                    r.detail,
                ),
                r.event_id,
                r.branch_code,
                r.detail,
                _message(r) if r.kind == InteractionKind.MESSAGE_SENT else None,
            )
            for r in rows
        ]


def _message(row: Any) -> SentMessage:
    return SentMessage(
        row.event_id, MessageChannel(row.channel), row.template_id, row.offer_id, row.decision_id
    )


# Converters of the fact rows of parties: each takes a row as its read selects it, the party id
# first and then these columns in this order (positional: named access costs a row more).
_ACCOUNT_COLUMNS = (
    "source_system",
    "source_record_id",
    "account_id",
    "product_line",
    "product_code",
    "currency",
    "branch_code",
    "opened_on",
    "closed_on",
    "card_tier",
    "product_risk",
    "overdue_days",
)


def _account(
    _party_id: str,
    system: str,
    record_id: str,
    account_id: str,
    line: str | None,
    code: str,
    currency: str,
    branch: str,
    opened_on: dt.date | None,
    closed_on: dt.date | None,
    card_tier: int | None,
    risk: int | None,
    overdue_days: int,
) -> StoredAccount:
    return StoredAccount(
        source=_source_key(system, record_id),
        account_id=account_id,
        product_line=ProductLine(line) if line else None,
        product_code=code,
        currency=currency,
        branch_code=branch,
        opened_on=opened_on,
        closed_on=closed_on,
        card_tier=CardTier(card_tier) if card_tier is not None else None,
        risk=ProductRisk(risk) if risk is not None else None,
        overdue_days=int(overdue_days),
    )


_BALANCE_COLUMNS = (
    "source_system",
    "source_record_id",
    "account_id",
    "currency",
    "balance_minor",
    "seq",
    "changed_at",
)


def _balance(
    _party_id: str,
    system: str,
    record_id: str,
    account_id: str,
    currency: str,
    balance_minor: int,
    seq: int,
    at: dt.datetime,
) -> StoredBalance:
    return StoredBalance(
        _source_key(system, record_id),
        account_id,
        currency,
        int(balance_minor),
        int(seq),
        as_utc(at),
    )


_INTERACTION_COLUMNS = (
    "source_system",
    "source_record_id",
    "kind",
    "occurred_at",
    "branch_code",
    "detail",
)


def _interaction(
    _party_id: str,
    system: str,
    record_id: str,
    kind: str,
    at: dt.datetime,
    branch_code: str,
    detail: str,
) -> Interaction:
    return Interaction(
        kind=InteractionKind(kind),
        at=as_utc(at),
        source=_source_key(system, record_id),
        channel_detail=branch_code or detail,
    )


_ACTIVITY_COLUMNS = (
    "source_system",
    "source_record_id",
    "account_id",
    "month",
    "currency",
    "transactions",
    "debit_minor",
    "credit_minor",
    "salary_minor",
    "card_purchase_minor",
)


def _activity(
    _party_id: str,
    system: str,
    record_id: str,
    account_id: str,
    month: dt.date,
    currency: str,
    transactions: int,
    debit_minor: int,
    credit_minor: int,
    salary_minor: int,
    card_purchase_minor: int,
) -> StoredActivity:
    return StoredActivity(
        source=_source_key(system, record_id),
        account_id=account_id,
        month=month,
        currency=currency,
        transactions=int(transactions),
        debit_minor=int(debit_minor),
        credit_minor=int(credit_minor),
        salary_minor=int(salary_minor),
        card_purchase_minor=int(card_purchase_minor),
    )


_CONSENT_COLUMNS = (
    "source_system",
    "source_record_id",
    "channel",
    "purpose",
    "given",
    "captured_at",
    "captured_where",
    "text_version",
    "seq",
)


def _consent(
    _party_id: str,
    system: str,
    record_id: str,
    channel: str,
    purpose: str,
    given: bool,
    captured_at: dt.datetime,
    captured_where: str,
    text_version: str,
    seq: int,
) -> StoredConsent:
    return StoredConsent(
        _source_key(system, record_id),
        Consent(
            Channel(channel),
            Purpose(purpose),
            bool(given),
            ConsentEvidence(as_utc(captured_at), captured_where, text_version),
        ),
        int(seq),
    )


_PREFERENCE_COLUMNS = (
    "source_system",
    "source_record_id",
    "language",
    "time_zone",
    "quiet_start",
    "quiet_end",
    "preferred_channel",
    "seq",
    "changed_at",
)


def _preferences(
    _party_id: str,
    system: str,
    record_id: str,
    language: str,
    time_zone: str,
    quiet_start: dt.time | None,
    quiet_end: dt.time | None,
    channel: str | None,
    seq: int,
    changed_at: dt.datetime,
) -> StoredPreferences:
    return StoredPreferences(
        _source_key(system, record_id),
        Preferences(
            language=language,
            time_zone=time_zone,
            quiet_hours=(
                QuietHours(quiet_start, quiet_end)
                if quiet_start is not None and quiet_end is not None
                else None
            ),
            preferred_channel=Channel(channel) if channel else None,
        ),
        int(seq),
        as_utc(changed_at),
    )


_RISK_COLUMNS = ("source_system", "source_record_id", "level", "assessed_on", "expires_on", "seq")


def _risk(
    _party_id: str,
    system: str,
    record_id: str,
    level: int,
    assessed_on: dt.date,
    expires_on: dt.date,
    seq: int,
) -> StoredRisk:
    return StoredRisk(
        _source_key(system, record_id),
        RiskAssessment(CustomerRisk(level), assessed_on, expires_on),
        int(seq),
    )


# --- set-based writes of source facts ---------------------------------------------------------

_ACCOUNT_KEY = ("source_system", "source_record_id", "account_id")
# Each group of account columns and the sequence that versions it.
_ACCOUNT_GROUPS = {
    "attributes_seq": ("product_line", "product_code", "currency", "branch_code"),
    "status_seq": ("closed_on",),
    "tier_seq": ("card_tier",),
    "risk_seq": ("product_risk",),
    "overdue_seq": ("overdue_days",),
}
_BALANCE_KEY = (*_ACCOUNT_KEY, "currency")
_ACTIVITY_KEY = (*_ACCOUNT_KEY, "month", "currency")
_ACTIVITY_SUMS = (
    "transactions",
    "debit_minor",
    "credit_minor",
    "salary_minor",
    "card_purchase_minor",
)
_CONSENT_KEY = ("source_system", "source_record_id", "channel", "purpose")
_RECORD_KEY = ("source_system", "source_record_id")

Row = dict[str, Any]
# The message columns of a source system's interaction (every row of a multi-row INSERT names
# the same columns).
_NO_MESSAGE: Row = {"channel": "", "template_id": "", "offer_id": "", "decision_id": ""}


def _upsert_newer(
    dialect: str, table: sa.Table, key: Sequence[str], columns: Sequence[str], version: str
) -> sa.Executable:
    """An INSERT of rows given as parameters; a row already there takes `columns` and `version`
    only from a newer fact (`version` below the new one)."""
    statement = insert_for(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: statement.excluded[name] for name in (*columns, version)},
        where=table.c[version] < statement.excluded[version],
    )


@dataclass(frozen=True)
class _FactWrites:
    accounts: dict[str, sa.Executable]  # by the version column of the group
    opened: sa.Executable
    balance: sa.Executable
    history: sa.Executable
    activity: sa.Executable
    interaction: sa.Executable
    consent: sa.Executable
    preference: sa.Executable
    risk: sa.Executable


@functools.cache
def _fact_writes(dialect: str) -> _FactWrites:
    opened = insert_for(dialect, account)
    activity = insert_for(dialect, monthly_activity)

    def others(table: sa.Table, key: Sequence[str]) -> list[str]:
        return [c.name for c in table.c if c.name not in key and c.name != "seq"]

    return _FactWrites(
        accounts={
            version: _upsert_newer(dialect, account, _ACCOUNT_KEY, columns, version)
            for version, columns in _ACCOUNT_GROUPS.items()
        },
        # The earliest opening date any opening fact gave (a second loan draw keeps the first).
        opened=opened.on_conflict_do_update(
            index_elements=list(_ACCOUNT_KEY),
            set_={"opened_on": opened.excluded.opened_on},
            where=sa.or_(
                account.c.opened_on.is_(None), account.c.opened_on > opened.excluded.opened_on
            ),
        ),
        balance=_upsert_newer(
            dialect,
            account_balance,
            _BALANCE_KEY,
            ("balance_minor", "changed_at"),
            "seq",
        ),
        history=insert_for(dialect, balance_history).on_conflict_do_nothing(),
        # Sums: the consumer's inbox makes sure each transaction arrives here once.
        activity=activity.on_conflict_do_update(
            index_elements=list(_ACTIVITY_KEY),
            set_={
                name: _sum(dialect, monthly_activity.c[name], activity.excluded[name])
                for name in _ACTIVITY_SUMS
            },
        ),
        interaction=insert_for(dialect, interaction).on_conflict_do_nothing(),
        consent=_upsert_newer(dialect, consent, _CONSENT_KEY, others(consent, _CONSENT_KEY), "seq"),
        preference=_upsert_newer(
            dialect, preference, _RECORD_KEY, others(preference, _RECORD_KEY), "seq"
        ),
        risk=_upsert_newer(
            dialect, risk_assessment, _RECORD_KEY, others(risk_assessment, _RECORD_KEY), "seq"
        ),
    )


_BIGINT_MAX = 2**63 - 1


def _sum(dialect: str, held: sa.ColumnElement[int], added: sa.ColumnElement[int]) -> Any:
    """`held + added`, refused when it passes a BIGINT (some 9,224 transactions of the largest
    amount in one account and month): PostgreSQL refuses it itself (bigint out of range); SQLite
    would store a REAL and carry on, so there it is NULL, which the column's NOT NULL refuses.
    Either way the event fails (the consumer retries it, then dead-letters it) and no sum is
    corrupted."""
    if dialect != "sqlite":
        return held + added
    return sa.case((held > _BIGINT_MAX - added, sa.null()), else_=held + added)


class _FactRows:
    """What a batch of events writes, at most one row per table key, chosen so that each
    conditional write leaves what applying the events one at a time would: per versioned kind
    the newest fact (of equals the first, as one at a time the later is refused), the earliest
    opening date, each balance fact and interaction once (the first), transactions summed.
    One row per key also lets a driver send a statement's rows as one multi-row INSERT."""

    def __init__(self) -> None:
        self._newest: dict[str, dict[tuple[Any, ...], Row]] = defaultdict(dict)
        self._opened: dict[tuple[Any, ...], Row] = {}
        self._history: dict[tuple[Any, ...], Row] = {}
        self._activity: dict[tuple[Any, ...], Row] = {}
        self._interactions: dict[tuple[Any, ...], Row] = {}

    def _newer(self, kind: str, key: tuple[Any, ...], row: Row, version: str = "seq") -> None:
        held = self._newest[kind].get(key)
        if held is None or held[version] < row[version]:
            self._newest[kind][key] = row

    def add(self, event: SourceEvent, month: dt.date) -> None:
        system, record = event.source.source_system, event.source.source_record_id
        seq = event.sequence
        key: tuple[Any, ...]
        row: Row
        for change in event.changes:
            match change:
                case OpenAccount():
                    key = (system, record, change.account_id)
                    row = dict(zip(_ACCOUNT_KEY, key, strict=True))
                    self._newer(
                        "attributes_seq",
                        key,
                        row
                        | {
                            "product_line": change.product_line.value,
                            "product_code": change.product_code,
                            "currency": change.currency,
                            "branch_code": change.branch_code,
                            "attributes_seq": seq,
                        },
                        "attributes_seq",
                    )
                    held = self._opened.get(key)
                    if held is None or held["opened_on"] > change.opened_on:
                        self._opened[key] = row | {"opened_on": change.opened_on}
                    self._account(key, "status_seq", closed_on=None, status_seq=seq)
                case CloseAccount():
                    key = (system, record, change.account_id)
                    self._account(key, "status_seq", closed_on=change.closed_on, status_seq=seq)
                case SetCardTier():
                    key = (system, record, change.account_id)
                    self._account(key, "tier_seq", card_tier=int(change.card_tier), tier_seq=seq)
                case SetProductRisk():
                    key = (system, record, change.account_id)
                    self._account(key, "risk_seq", product_risk=int(change.risk), risk_seq=seq)
                case SetOverdue():
                    key = (system, record, change.account_id)
                    self._account(
                        key, "overdue_seq", overdue_days=change.overdue_days, overdue_seq=seq
                    )
                case SetBalance():
                    key = (system, record, change.account_id, change.currency)
                    row = dict(zip(_BALANCE_KEY, key, strict=True)) | {
                        "balance_minor": change.balance_minor,
                        "seq": seq,
                        "changed_at": event.at,
                    }
                    self._newer("balance", key, row)
                    self._history.setdefault((*key, seq), row)
                case AddTransaction():
                    self._transaction(event, change, month)
                case RecordInteraction():
                    self._interactions.setdefault(
                        (system, event.event_id),
                        {
                            "source_system": system,
                            "event_id": event.event_id,
                            "source_record_id": record,
                            "kind": change.kind.value,
                            "occurred_at": event.at,
                            "branch_code": change.branch_code,
                            "detail": change.detail,
                        }
                        | _NO_MESSAGE,
                    )
                case RecordMessage():
                    message = change.message
                    self._interactions.setdefault(
                        (system, event.event_id),
                        {
                            "source_system": system,
                            "event_id": event.event_id,
                            "source_record_id": record,
                            "kind": InteractionKind.MESSAGE_SENT.value,
                            "occurred_at": event.at,
                            "branch_code": "",
                            "detail": "",
                            "channel": message.channel.value,
                            "template_id": message.template_id,
                            "offer_id": message.offer_id,
                            "decision_id": message.decision_id,
                        },
                    )
                case SetConsent():
                    given = change.consent
                    key = (system, record, given.channel.value, given.purpose.value)
                    self._newer(
                        "consent",
                        key,
                        dict(zip(_CONSENT_KEY, key, strict=True))
                        | {
                            "given": given.given,
                            "captured_where": given.evidence.where,
                            "captured_at": given.evidence.captured_at,
                            "text_version": given.evidence.text_version,
                            "seq": seq,
                        },
                    )
                case SetPreferences():
                    preferences = change.preferences
                    quiet = preferences.quiet_hours
                    channel = preferences.preferred_channel
                    self._newer(
                        "preference",
                        (system, record),
                        {
                            "source_system": system,
                            "source_record_id": record,
                            "language": preferences.language,
                            "time_zone": preferences.time_zone,
                            "quiet_start": quiet.start if quiet else None,
                            "quiet_end": quiet.end if quiet else None,
                            "preferred_channel": channel.value if channel else None,
                            "seq": seq,
                            "changed_at": event.at,
                        },
                    )
                case SetRiskAssessment():
                    assessment = change.assessment
                    self._newer(
                        "risk",
                        (system, record),
                        {
                            "source_system": system,
                            "source_record_id": record,
                            "level": int(assessment.level),
                            "assessed_on": assessment.assessed_on,
                            "expires_on": assessment.expires_on,
                            "seq": seq,
                        },
                    )

    def _account(self, key: tuple[Any, ...], version: str, **values: Any) -> None:
        self._newer(version, key, dict(zip(_ACCOUNT_KEY, key, strict=True)) | values, version)

    def _transaction(self, event: SourceEvent, change: AddTransaction, month: dt.date) -> None:
        debit = change.amount_minor if change.direction is Direction.DEBIT else 0
        credit = change.amount_minor if change.direction is Direction.CREDIT else 0
        key = (
            event.source.source_system,
            event.source.source_record_id,
            change.account_id,
            month,
            change.currency,
        )
        row = self._activity.setdefault(
            key, dict(zip(_ACTIVITY_KEY, key, strict=True)) | dict.fromkeys(_ACTIVITY_SUMS, 0)
        )
        row["transactions"] += 1
        row["debit_minor"] += debit
        row["credit_minor"] += credit
        row["salary_minor"] += credit if change.salary else 0
        row["card_purchase_minor"] += debit if change.card_purchase else 0

    def writes(self, statements: _FactWrites) -> list[tuple[sa.Executable, list[Row]]]:
        """Each statement with its rows, the ones without rows left out."""
        newest = self._newest
        planned = [
            *((statements.accounts[v], newest[v]) for v in _ACCOUNT_GROUPS),
            (statements.opened, self._opened),
            (statements.balance, newest["balance"]),
            (statements.history, self._history),
            (statements.activity, self._activity),
            (statements.interaction, self._interactions),
            (statements.consent, newest["consent"]),
            (statements.preference, newest["preference"]),
            (statements.risk, newest["risk"]),
        ]
        return [(statement, list(rows.values())) for statement, rows in planned if rows]


# --- set-based reads of the facts of parties ----------------------------------------------------

_LINKS = profile_source_record


def _on_records(table: sa.Table | sa.Subquery) -> sa.ColumnElement[bool]:
    return sa.and_(
        _LINKS.c.source_system == table.c.source_system,
        _LINKS.c.source_record_id == table.c.source_record_id,
    )


def _of_parties(table: sa.Table, columns: Sequence[str], dialect: str) -> sa.Select[Any]:
    """The party_id and `columns` of the table's rows for the records linked to the parties."""
    return (
        sa.select(_LINKS.c.party_id, *(table.c[name] for name in columns))
        .select_from(table.join(_LINKS, _on_records(table)))
        .where(_one_of_parties(_LINKS.c.party_id, dialect))
    )


def _history_of_parties(dialect: str) -> sa.CompoundSelect[Any]:
    """Balance facts from `since` on, and the last one before it of each account and currency:
    the balance the window starts with."""
    h = balance_history
    series = (h.c.source_system, h.c.source_record_id, h.c.account_id, h.c.currency)
    since = sa.bindparam("since", type_=h.c.changed_at.type)
    last_before = (
        sa.select(*series, sa.func.max(h.c.seq).label("seq"), _LINKS.c.party_id)
        .select_from(h.join(_LINKS, _on_records(h)))
        .where(_one_of_parties(_LINKS.c.party_id, dialect), h.c.changed_at < since)
        .group_by(*series, _LINKS.c.party_id)
        .subquery()
    )
    earlier = sa.select(
        last_before.c.party_id, *(h.c[name] for name in _BALANCE_COLUMNS)
    ).select_from(
        h.join(
            last_before,
            sa.and_(
                h.c.source_system == last_before.c.source_system,
                h.c.source_record_id == last_before.c.source_record_id,
                h.c.account_id == last_before.c.account_id,
                h.c.currency == last_before.c.currency,
                h.c.seq == last_before.c.seq,
            ),
        )
    )
    recent = _of_parties(h, _BALANCE_COLUMNS, dialect).where(h.c.changed_at >= since)
    return sa.union_all(recent, earlier)


def _interactions_of_parties(dialect: str) -> sa.Select[Any]:
    """Each party's most recent interactions from `since` on, at most MAX_FACT_INTERACTIONS."""
    ranked = (
        _of_parties(interaction, _INTERACTION_COLUMNS, dialect)
        .add_columns(
            sa.func.row_number()
            .over(partition_by=_LINKS.c.party_id, order_by=interaction.c.occurred_at.desc())
            .label("recency")
        )
        .where(interaction.c.occurred_at >= sa.bindparam("since"))
        .subquery()
    )
    return sa.select(ranked.c.party_id, *(ranked.c[name] for name in _INTERACTION_COLUMNS)).where(
        ranked.c.recency <= MAX_FACT_INTERACTIONS
    )


@dataclass(frozen=True)
class _FactReads:
    accounts: sa.Select[Any]
    balances: sa.Select[Any]
    history: sa.CompoundSelect[Any]
    activity: sa.Select[Any]
    interactions: sa.Select[Any]
    consents: sa.Select[Any]
    preferences: sa.Select[Any]
    risks: sa.Select[Any]


@functools.cache
def _fact_reads(dialect: str) -> _FactReads:
    return _FactReads(
        accounts=_of_parties(account, _ACCOUNT_COLUMNS, dialect),
        balances=_of_parties(account_balance, _BALANCE_COLUMNS, dialect),
        history=_history_of_parties(dialect),
        activity=_of_parties(monthly_activity, _ACTIVITY_COLUMNS, dialect).where(
            monthly_activity.c.month >= sa.bindparam("first_month")
        ),
        interactions=_interactions_of_parties(dialect),
        consents=_of_parties(consent, _CONSENT_COLUMNS, dialect),
        preferences=_of_parties(preference, _PREFERENCE_COLUMNS, dialect),
        risks=_of_parties(risk_assessment, _RISK_COLUMNS, dialect),
    )


class SqlProfileReads:
    """Opens the stores for reads (GetProfile, ListHoldings, ListInteractions, SearchProfiles):
    `async with reads() as unit:`. On PostgreSQL in autocommit: each statement sees what was
    committed when it started, as it would in a READ COMMITTED transaction, without the BEGIN
    and ROLLBACK round trips of one. On SQLite a transaction as any other. `reads.snapshot()`
    for reads that must agree with each other."""

    def __init__(self, database: Database) -> None:
        self._dialect = database.dialect
        engine = snapshot_engine = database.engine
        if database.is_postgres:
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
            snapshot_engine = snapshot_engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._snapshot_sessions = async_sessionmaker(snapshot_engine, expire_on_commit=False)

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[_Stores]:
        async with self._sessions() as session:
            yield _Stores(
                SqlPartyStore(session, self._dialect), SqlFactStore(session, self._dialect)
            )

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[_Stores]:
        """The stores, every read seeing one moment: a read-only REPEATABLE READ transaction on
        PostgreSQL (its BEGIN and ROLLBACK the price); on SQLite a transaction as any other."""
        async with self._snapshot_sessions() as session, session.begin():
            yield _Stores(
                SqlPartyStore(session, self._dialect), SqlFactStore(session, self._dialect)
            )


@dataclass(frozen=True)
class _Stores:
    parties: SqlPartyStore
    facts: SqlFactStore


class SqlProfileUnitOfWork(UnitOfWork):
    """The runtime's unit of work with the profile's stores; `record` stages a ProfileChanged
    in the outbox of the same transaction."""

    def __init__(
        self,
        database: Database,
        encode: Callable[[ProfileChanged], OutgoingEvent],
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(database, on_commit=on_commit)
        self._encode = encode

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.parties = SqlPartyStore(self.session, self.dialect)
        self.facts = SqlFactStore(self.session, self.dialect)
        return self

    def record(self, event: ProfileChanged) -> None:
        self.stage(self._encode(event))
