"""A consumer's batch of source events, applied in one transaction with set-based writes, leaves
exactly the facts and profiles that applying the same events one at a time leaves (Hypothesis),
on SQLite and PostgreSQL: events out of sequence order, several facts of one kind for one key in
one batch, equal sequences (the first applied wins, as one at a time the later is refused),
opening dates, transaction sums, repeated contacts, records not linked yet.

And whichever way they were applied, each profile read from its read model is the profile
computed afresh.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zhike_profile.app import DEFINITION
from zhike_profile.domain.facts import (
    CardTier,
    Channel,
    Consent,
    ConsentEvidence,
    CustomerRisk,
    Direction,
    InteractionKind,
    Preferences,
    ProductLine,
    ProductRisk,
    Purpose,
    RiskAssessment,
    SourceKey,
)
from zhike_profile.domain.model import ProfileView
from zhike_profile.domain.ports import ProfileUnitOfWork
from zhike_profile.domain.source_events import (
    AddTransaction,
    Change,
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
from zhike_profile.storage import schema
from zhike_runtime.db import Database
from zhike_runtime.events.schema import inbox_event, outbox_event
from zhike_runtime.testing.services import migrate_databases

from ..profile_harness import Harness
from ..source_facts import T0

PARTIES = (str(uuid.UUID(int=1)), str(uuid.UUID(int=2)))
# R1 and R2 are one party's, R3 the other's; R4 is not linked (its facts wait for a link).
LINKS = {
    SourceKey("core", "R1"): PARTIES[0],
    SourceKey("cards", "R2"): PARTIES[0],
    SourceKey("core", "R3"): PARTIES[1],
}
KEYS = (*LINKS, SourceKey("wealth", "R4"))
FACT_TABLES = (
    schema.account,
    schema.account_balance,
    schema.balance_history,
    schema.monthly_activity,
    schema.interaction,
    schema.consent,
    schema.preference,
    schema.risk_assessment,
)
TABLES = (*FACT_TABLES, schema.profile_segment, schema.profile_source_record, schema.profile)

accounts = st.sampled_from(["A", "B"])
currencies = st.sampled_from(["CNY", "USD"])
days = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2026, 11, 1))
changes: st.SearchStrategy[Change] = st.one_of(
    st.builds(
        OpenAccount,
        accounts,
        st.sampled_from([ProductLine.SAVINGS, ProductLine.CREDIT_CARD, ProductLine.MORTGAGE]),
        st.sampled_from(["P1", "P2"]),
        currencies,
        st.sampled_from(["0101", "0202"]),
        days,
    ),
    st.builds(CloseAccount, accounts, days),
    st.builds(SetBalance, accounts, currencies, st.integers(-(10**6), 10**9)),
    st.builds(
        AddTransaction,
        accounts,
        currencies,
        st.integers(1, 10**7),
        st.sampled_from(Direction),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(SetCardTier, accounts, st.sampled_from(CardTier)),
    st.builds(SetProductRisk, accounts, st.sampled_from(ProductRisk)),
    st.builds(SetOverdue, accounts, st.integers(0, 90)),
    st.builds(
        RecordInteraction,
        st.sampled_from([InteractionKind.BRANCH_VISIT, InteractionKind.APP_LOGIN]),
        st.just("0101"),
        st.just(""),
    ),
    st.builds(
        SetConsent,
        st.builds(
            Consent,
            st.sampled_from([Channel.SMS, Channel.EMAIL]),
            st.just(Purpose.MARKETING),
            st.booleans(),
            st.builds(
                ConsentEvidence,
                st.sampled_from([T0 - dt.timedelta(days=3), T0 - dt.timedelta(days=1)]),
                st.just("branch 0101"),
                st.sampled_from(["v2", "v3"]),
            ),
        ),
    ),
    st.builds(
        SetPreferences,
        st.builds(Preferences, st.sampled_from(["zh-CN", "en-GB"]), st.just("Asia/Shanghai")),
    ),
    st.builds(
        SetRiskAssessment,
        st.builds(
            RiskAssessment,
            st.sampled_from(CustomerRisk),
            st.just(dt.date(2026, 6, 1)),
            st.sampled_from([dt.date(2026, 10, 1), dt.date(2027, 6, 1)]),
        ),
    ),
)


@st.composite
def source_events(draw: st.DrawFn) -> list[SourceEvent]:
    """Events with unique ids (the inbox lets each through once), sequences from a small range
    (so that equal and lower ones meet), times over the last few months."""
    count = draw(st.integers(1, 40))
    return [
        SourceEvent(
            source=draw(st.sampled_from(KEYS)),
            event_id=f"e{n}",
            at=T0 - dt.timedelta(hours=draw(st.integers(0, 24 * 120))),
            sequence=draw(st.integers(1, 6)),
            changes=tuple(draw(st.lists(changes, min_size=1, max_size=2))),
        )
        for n in range(count)
    ]


async def _reset(url: str) -> Harness:
    harness = Harness(Database(url))
    async with harness.database.engine.begin() as connection:
        for table in (*TABLES, outbox_event, inbox_event):
            await connection.execute(table.delete())
    for n, (key, party_id) in enumerate(LINKS.items()):
        await harness.linked(f"link-{n}", key, party_id, 1, T0 - dt.timedelta(days=200))
    return harness


async def _rows(harness: Harness) -> dict[str, list[tuple[Any, ...]]]:
    async with harness.database.session() as session:
        return {
            table.name: sorted(tuple(row) for row in await session.execute(sa.select(*table.c)))
            for table in FACT_TABLES
        }


async def served_and_fresh(harness: Harness, party_id: str) -> tuple[ProfileView, ProfileView]:
    """The profile as GetProfile serves it, and as computed afresh (its read model removed)."""
    served = await harness.profile(party_id)
    async with harness.database.engine.begin() as connection:
        await connection.execute(
            sa.update(schema.profile).where(schema.profile.c.party_id == party_id).values(view=None)
        )
    return served, await harness.profile(party_id)


def applying(
    harness: Harness, events: list[SourceEvent]
) -> Callable[[ProfileUnitOfWork], Awaitable[None]]:
    """The events applied in one transaction, as the consumer applies a batch."""

    async def apply(unit: ProfileUnitOfWork) -> None:
        await harness.updates.apply_source_events(unit, events)

    return apply


def without_update(view: ProfileView) -> tuple[Any, ...]:
    """What a profile shows but its update time and event count (they count deliveries)."""
    return (view.profile.source_records, view.profile.display_name, view.facts, view.assessment)


@pytest.fixture
def two_stores(two_database_urls: tuple[str, str]) -> tuple[str, str]:
    migrate_databases(two_database_urls, DEFINITION.migrations)
    return two_database_urls


def test_a_batch_in_one_transaction_leaves_what_one_event_at_a_time_leaves(
    two_stores: tuple[str, str],
) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(events=source_events(), cuts=st.lists(st.integers(1, 40), max_size=4))
    def batched_as_one_by_one(events: list[SourceEvent], cuts: list[int]) -> None:
        asyncio.run(compare(events, cuts))

    async def compare(events: list[SourceEvent], cuts: list[int]) -> None:
        one_by_one, batched = await _reset(two_stores[0]), await _reset(two_stores[1])
        try:
            for event in events:
                await one_by_one.deliver(event.event_id, applying(one_by_one, [event]))
            bounds = [0, *sorted({c for c in cuts if c < len(events)}), len(events)]
            for first, last in itertools.pairwise(bounds):
                await batched.deliver(f"batch-{first}", applying(batched, events[first:last]))
            assert await _rows(batched) == await _rows(one_by_one)
            for party_id in PARTIES:
                expected, expected_fresh = await served_and_fresh(one_by_one, party_id)
                actual, actual_fresh = await served_and_fresh(batched, party_id)
                assert without_update(actual) == without_update(expected)
                assert without_update(expected) == without_update(expected_fresh)
                assert without_update(actual) == without_update(actual_fresh)
        finally:
            await one_by_one.close()
            await batched.close()

    batched_as_one_by_one()
