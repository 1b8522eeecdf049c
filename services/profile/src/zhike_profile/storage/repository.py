"""The profile's stores over SQLAlchemy Core, and its unit of work.

Every write of a source fact is conditional on the version it carries (`… WHERE seq < :new`),
so the stores may be handed events in any order, twice, or late: the outcome is the one the
newest fact of each kind gives. Repositories never commit; the unit of work does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from zhike_profile.domain.facts import (
    CardTier,
    Channel,
    Consent,
    ConsentEvidence,
    CustomerRisk,
    Direction,
    Interaction,
    InteractionKind,
    Preferences,
    ProductLine,
    ProductRisk,
    Purpose,
    QuietHours,
    RiskAssessment,
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
from zhike_profile.domain.ports import Link, Published, StoredInteraction
from zhike_profile.domain.snapshot import ProfileChanged, Snapshot, from_json, to_json
from zhike_profile.domain.source_events import (
    AddTransaction,
    CloseAccount,
    OpenAccount,
    RecordInteraction,
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
    return SourceKey(row.source_system, row.source_record_id)


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

    async def get(self, party_id: str) -> Profile | None:
        row = (
            await self._session.execute(sa.select(profile).where(profile.c.party_id == party_id))
        ).first()
        if row is None:
            return None
        records = await self._session.execute(
            sa.select(profile_source_record)
            .where(profile_source_record.c.party_id == party_id)
            .order_by(
                profile_source_record.c.linked_at,
                profile_source_record.c.source_system,
                profile_source_record.c.source_record_id,
            )
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
            version=int(row.version),
        )

    async def forwarded_to(self, party_id: str) -> str | None:
        value = await self._session.scalar(
            sa.select(profile.c.merged_into).where(profile.c.party_id == party_id)
        )
        return str(value) if value else None

    async def retire(self, party_id: str, into: str, at: dt.datetime) -> bool:
        result = await self._session.execute(
            sa.update(profile)
            .where(profile.c.party_id == party_id, profile.c.merged_into.is_(None))
            .values(merged_into=into, updated_at=at)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

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

    async def reassign(self, from_party_id: str, to_party_id: str) -> None:
        await self._session.execute(
            sa.update(profile_source_record)
            .where(profile_source_record.c.party_id == from_party_id)
            .values(party_id=to_party_id)
        )

    async def record_keys(self, party_id: str) -> tuple[SourceKey, ...]:
        rows = await self._session.execute(
            sa.select(
                profile_source_record.c.source_system, profile_source_record.c.source_record_id
            )
            .where(profile_source_record.c.party_id == party_id)
            .order_by(
                profile_source_record.c.source_system, profile_source_record.c.source_record_id
            )
        )
        return tuple(_key(r) for r in rows)

    async def set_display_name(self, party_id: str, name: str, at: dt.datetime) -> None:
        await self._session.execute(
            sa.update(profile)
            .where(
                profile.c.party_id == party_id,
                sa.or_(profile.c.display_name_at.is_(None), profile.c.display_name_at < at),
            )
            .values(display_name=name, display_name_at=at)
        )

    async def published(self, party_id: str) -> Published:
        row = (
            await self._session.execute(
                sa.select(profile.c.version, profile.c.snapshot).where(
                    profile.c.party_id == party_id
                )
            )
        ).first()
        if row is None:
            return Published(0, from_json(None))
        return Published(int(row.version), from_json(row.snapshot))

    async def publish(
        self, party_id: str, version: int, snapshot: Snapshot, at: dt.datetime
    ) -> None:
        await self._session.execute(
            sa.update(profile)
            .where(profile.c.party_id == party_id)
            .values(
                version=version,
                snapshot=to_json(snapshot),
                tier=snapshot.tier.name if snapshot.tier else None,
                value_band=snapshot.value_band,
                total_assets_cny_minor=snapshot.total_assets_cny_minor,
                risk_expires_on=(
                    snapshot.risk.expires_on if snapshot.risk.effective_level is not None else None
                ),
                updated_at=at,
            )
        )
        await self._session.execute(
            sa.delete(profile_segment).where(profile_segment.c.party_id == party_id)
        )
        if snapshot.segments:
            await self._session.execute(
                sa.insert(profile_segment),
                [{"segment": name, "party_id": party_id} for name in sorted(snapshot.segments)],
            )

    async def risk_expiring(self, on: dt.date, limit: int) -> list[str]:
        rows = await self._session.execute(
            sa.select(profile.c.party_id)
            .where(profile.c.risk_expires_on <= on, profile.c.merged_into.is_(None))
            .order_by(profile.c.risk_expires_on, profile.c.party_id)
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

    async def apply(self, event: SourceEvent, month: dt.date) -> None:
        for change in event.changes:
            match change:
                case OpenAccount():
                    await self._open(event, change)
                case CloseAccount():
                    await self._account_update(
                        event,
                        change.account_id,
                        account.c.status_seq,
                        closed_on=change.closed_on,
                        status_seq=event.sequence,
                    )
                case SetBalance():
                    await self._balance(event, change)
                case AddTransaction():
                    await self._transaction(event, change, month)
                case SetCardTier():
                    await self._account_update(
                        event,
                        change.account_id,
                        account.c.tier_seq,
                        card_tier=int(change.card_tier),
                        tier_seq=event.sequence,
                    )
                case SetProductRisk():
                    await self._account_update(
                        event,
                        change.account_id,
                        account.c.risk_seq,
                        product_risk=int(change.risk),
                        risk_seq=event.sequence,
                    )
                case SetOverdue():
                    await self._account_update(
                        event,
                        change.account_id,
                        account.c.overdue_seq,
                        overdue_days=change.overdue_days,
                        overdue_seq=event.sequence,
                    )
                case RecordInteraction():
                    await self._interaction(event, change)
                case SetConsent():
                    await self._consent(event, change.consent)
                case SetPreferences():
                    await self._preferences(event, change.preferences)
                case SetRiskAssessment():
                    await self._risk(event, change.assessment)

    def _account_key(self, event: SourceEvent, account_id: str) -> dict[str, str]:
        return {
            "source_system": event.source.source_system,
            "source_record_id": event.source.source_record_id,
            "account_id": account_id,
        }

    def _account_where(self, event: SourceEvent, account_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            account.c.source_system == event.source.source_system,
            account.c.source_record_id == event.source.source_record_id,
            account.c.account_id == account_id,
        )

    async def _ensure_account(self, event: SourceEvent, account_id: str) -> None:
        await self._session.execute(
            insert_for(self._dialect, account)
            .values(**self._account_key(event, account_id))
            .on_conflict_do_nothing()
        )

    async def _account_update(
        self,
        event: SourceEvent,
        account_id: str,
        version: sa.Column[int],
        **values: Any,
    ) -> None:
        """Sets a group of the account's columns unless a newer fact already set them."""
        await self._ensure_account(event, account_id)
        await self._session.execute(
            sa.update(account)
            .where(self._account_where(event, account_id), version < event.sequence)
            .values(**values)
        )

    async def _open(self, event: SourceEvent, change: OpenAccount) -> None:
        await self._account_update(
            event,
            change.account_id,
            account.c.attributes_seq,
            product_line=change.product_line.value,
            product_code=change.product_code,
            currency=change.currency,
            branch_code=change.branch_code,
            attributes_seq=event.sequence,
        )
        # The earliest opening date any opening fact gave (a second loan draw keeps the first).
        await self._session.execute(
            sa.update(account)
            .where(
                self._account_where(event, change.account_id),
                sa.or_(account.c.opened_on.is_(None), account.c.opened_on > change.opened_on),
            )
            .values(opened_on=change.opened_on)
        )
        await self._session.execute(
            sa.update(account)
            .where(
                self._account_where(event, change.account_id),
                account.c.status_seq < event.sequence,
            )
            .values(closed_on=None, status_seq=event.sequence)
        )

    async def _balance(self, event: SourceEvent, change: SetBalance) -> None:
        row = {
            **self._account_key(event, change.account_id),
            "currency": change.currency,
            "balance_minor": change.balance_minor,
            "seq": event.sequence,
            "changed_at": event.at,
        }
        statement = insert_for(self._dialect, account_balance).values(row)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["source_system", "source_record_id", "account_id", "currency"],
                set_={
                    "balance_minor": statement.excluded.balance_minor,
                    "seq": statement.excluded.seq,
                    "changed_at": statement.excluded.changed_at,
                },
                where=account_balance.c.seq < statement.excluded.seq,
            )
        )
        await self._session.execute(
            insert_for(self._dialect, balance_history).values(row).on_conflict_do_nothing()
        )

    async def _transaction(
        self, event: SourceEvent, change: AddTransaction, month: dt.date
    ) -> None:
        debit = change.amount_minor if change.direction is Direction.DEBIT else 0
        credit = change.amount_minor if change.direction is Direction.CREDIT else 0
        salary = credit if change.salary else 0
        purchase = debit if change.card_purchase else 0
        statement = insert_for(self._dialect, monthly_activity).values(
            source_system=event.source.source_system,
            source_record_id=event.source.source_record_id,
            account_id=change.account_id,
            month=month,
            currency=change.currency,
            transactions=1,
            debit_minor=debit,
            credit_minor=credit,
            salary_minor=salary,
            card_purchase_minor=purchase,
        )
        # Sums: the consumer's inbox makes sure each transaction arrives here once.
        activity = monthly_activity.c
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[
                    "source_system",
                    "source_record_id",
                    "account_id",
                    "month",
                    "currency",
                ],
                set_={
                    "transactions": activity.transactions + 1,
                    "debit_minor": activity.debit_minor + debit,
                    "credit_minor": activity.credit_minor + credit,
                    "salary_minor": activity.salary_minor + salary,
                    "card_purchase_minor": activity.card_purchase_minor + purchase,
                },
            )
        )

    async def _interaction(self, event: SourceEvent, change: RecordInteraction) -> None:
        await self._session.execute(
            insert_for(self._dialect, interaction)
            .values(
                source_system=event.source.source_system,
                event_id=event.event_id,
                source_record_id=event.source.source_record_id,
                kind=change.kind.value,
                occurred_at=event.at,
                branch_code=change.branch_code,
                detail=change.detail,
            )
            .on_conflict_do_nothing()
        )

    async def _upsert_versioned(
        self, table: sa.Table, key: Sequence[str], row: dict[str, Any]
    ) -> None:
        statement = insert_for(self._dialect, table).values(row)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=list(key),
                set_={name: statement.excluded[name] for name in row if name not in key},
                where=table.c.seq < statement.excluded.seq,
            )
        )

    async def _consent(self, event: SourceEvent, given: Consent) -> None:
        await self._upsert_versioned(
            consent,
            ("source_system", "source_record_id", "channel", "purpose"),
            {
                "source_system": event.source.source_system,
                "source_record_id": event.source.source_record_id,
                "channel": given.channel.value,
                "purpose": given.purpose.value,
                "given": given.given,
                "captured_where": given.evidence.where,
                "captured_at": given.evidence.captured_at,
                "text_version": given.evidence.text_version,
                "seq": event.sequence,
            },
        )

    async def _preferences(self, event: SourceEvent, preferences: Preferences) -> None:
        quiet = preferences.quiet_hours
        channel = preferences.preferred_channel
        await self._upsert_versioned(
            preference,
            ("source_system", "source_record_id"),
            {
                "source_system": event.source.source_system,
                "source_record_id": event.source.source_record_id,
                "language": preferences.language,
                "time_zone": preferences.time_zone,
                "quiet_start": quiet.start if quiet else None,
                "quiet_end": quiet.end if quiet else None,
                "preferred_channel": channel.value if channel else None,
                "seq": event.sequence,
                "changed_at": event.at,
            },
        )

    async def _risk(self, event: SourceEvent, assessment: RiskAssessment) -> None:
        await self._upsert_versioned(
            risk_assessment,
            ("source_system", "source_record_id"),
            {
                "source_system": event.source.source_system,
                "source_record_id": event.source.source_record_id,
                "level": int(assessment.level),
                "assessed_on": assessment.assessed_on,
                "expires_on": assessment.expires_on,
                "seq": event.sequence,
            },
        )

    # --- reads ------------------------------------------------------------------------------

    async def _rows(self, query: sa.Select[Any]) -> Sequence[Any]:
        rows: Sequence[Any] = (await self._session.execute(query)).all()
        return rows

    async def stored(self, records: Sequence[SourceKey], since: dt.datetime) -> StoredFacts:
        if not records:
            return StoredFacts()
        accounts = await self._rows(sa.select(account).where(_keys_clause(account, records)))
        balances = await self._rows(
            sa.select(account_balance).where(_keys_clause(account_balance, records))
        )
        history = await self._history(records, since)
        activity = await self._rows(
            sa.select(monthly_activity).where(
                _keys_clause(monthly_activity, records),
                monthly_activity.c.month >= since.date() - dt.timedelta(days=31),
            )
        )
        interactions = await self._rows(
            sa.select(interaction)
            .where(_keys_clause(interaction, records), interaction.c.occurred_at >= since)
            .order_by(interaction.c.occurred_at.desc())
            .limit(MAX_FACT_INTERACTIONS)
        )
        consents = await self._rows(sa.select(consent).where(_keys_clause(consent, records)))
        preferences = await self._rows(
            sa.select(preference).where(_keys_clause(preference, records))
        )
        risks = await self._rows(
            sa.select(risk_assessment).where(_keys_clause(risk_assessment, records))
        )
        return StoredFacts(
            accounts=tuple(_account(r) for r in accounts),
            balances=tuple(_balance(r) for r in balances),
            history=tuple(_balance(r) for r in history),
            activity=tuple(
                StoredActivity(
                    source=_key(r),
                    account_id=r.account_id,
                    month=r.month,
                    currency=r.currency,
                    transactions=int(r.transactions),
                    debit_minor=int(r.debit_minor),
                    credit_minor=int(r.credit_minor),
                    salary_minor=int(r.salary_minor),
                    card_purchase_minor=int(r.card_purchase_minor),
                )
                for r in activity
            ),
            interactions=tuple(_interaction(r) for r in interactions),
            consents=tuple(
                StoredConsent(
                    _key(r),
                    Consent(
                        Channel(r.channel),
                        Purpose(r.purpose),
                        bool(r.given),
                        ConsentEvidence(as_utc(r.captured_at), r.captured_where, r.text_version),
                    ),
                    int(r.seq),
                )
                for r in consents
            ),
            preferences=tuple(
                StoredPreferences(
                    _key(r),
                    Preferences(
                        language=r.language,
                        time_zone=r.time_zone,
                        quiet_hours=(
                            QuietHours(r.quiet_start, r.quiet_end)
                            if r.quiet_start is not None and r.quiet_end is not None
                            else None
                        ),
                        preferred_channel=(
                            Channel(r.preferred_channel) if r.preferred_channel else None
                        ),
                    ),
                    int(r.seq),
                    as_utc(r.changed_at),
                )
                for r in preferences
            ),
            risks=tuple(
                StoredRisk(
                    _key(r),
                    RiskAssessment(CustomerRisk(r.level), r.assessed_on, r.expires_on),
                    int(r.seq),
                )
                for r in risks
            ),
            records=tuple(records),
        )

    async def _history(self, records: Sequence[SourceKey], since: dt.datetime) -> list[Any]:
        """Balance facts from `since` on, and the last one before it of each account and
        currency: the balance the window starts with."""
        h = balance_history
        series = (h.c.source_system, h.c.source_record_id, h.c.account_id, h.c.currency)
        recent = await self._rows(
            sa.select(h).where(_keys_clause(h, records), h.c.changed_at >= since)
        )
        last_before = (
            sa.select(*series, sa.func.max(h.c.seq).label("seq"))
            .where(_keys_clause(h, records), h.c.changed_at < since)
            .group_by(*series)
            .subquery()
        )
        earlier = await self._rows(
            sa.select(h).join(
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
        return [*earlier, *recent]

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
        rows = await self._rows(query.order_by(*(column.desc() for column in order)).limit(limit))
        return [
            StoredInteraction(_interaction(r), r.event_id, r.branch_code, r.detail) for r in rows
        ]


def _account(row: Any) -> StoredAccount:
    return StoredAccount(
        source=_key(row),
        account_id=row.account_id,
        product_line=ProductLine(row.product_line) if row.product_line else None,
        product_code=row.product_code,
        currency=row.currency,
        branch_code=row.branch_code,
        opened_on=row.opened_on,
        closed_on=row.closed_on,
        card_tier=CardTier(row.card_tier) if row.card_tier is not None else None,
        risk=ProductRisk(row.product_risk) if row.product_risk is not None else None,
        overdue_days=int(row.overdue_days),
    )


def _balance(row: Any) -> StoredBalance:
    return StoredBalance(
        _key(row),
        row.account_id,
        row.currency,
        int(row.balance_minor),
        int(row.seq),
        as_utc(row.changed_at),
    )


def _interaction(row: Any) -> Interaction:
    return Interaction(
        kind=InteractionKind(row.kind),
        at=as_utc(row.occurred_at),
        source=_key(row),
        channel_detail=row.branch_code or row.detail,
    )


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
