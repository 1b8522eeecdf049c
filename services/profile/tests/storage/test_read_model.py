"""GetProfile answers from the read model each change stores (domain/read_model.py) while it is
as of today and on the service's basis, and otherwise computes the profile afresh; either way the
answer is the same; computed afresh, from one moment. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from zhike.source.v1 import source_event_pb2 as pb
from zhike_profile.domain.facts import SourceKey
from zhike_profile.domain.model import ProfileView
from zhike_profile.domain.read_model import ReadModel, from_json, to_json
from zhike_profile.domain.service import Facts, ProfileQueries
from zhike_profile.storage import schema
from zhike_profile.storage.repository import SqlFactStore, SqlProfileReads
from zhike_runtime.testing.processes import PostgresCluster

from ..profile_harness import CONFIG, Harness
from ..source_facts import (
    T0,
    account_opened,
    balance_changed,
    card_issued,
    consent,
    interaction,
    loan_drawn,
    risk_assessed,
    salary_paid,
    source_event,
)

CORE = SourceKey("core", "C-1")
CARDS = SourceKey("cards", "K-1")
LOANS = SourceKey("loans", "L-1")
THIRTY = dt.date(1996, 5, 1)


async def a_customer(harness: Harness) -> str:
    """A party with records in three systems: deposits in two currencies with history and a
    salary, a gold card, a mortgage, consents, a risk assessment expiring tomorrow, contacts."""
    party_id = str(uuid.uuid4())
    for n, key in enumerate((CORE, CARDS, LOANS)):
        await harness.linked(f"l{n}", key, party_id, 1, T0 - dt.timedelta(days=90))
    await harness.named("g", party_id, "刘晓燕", T0 - dt.timedelta(days=90), THIRTY)
    before = T0 - dt.timedelta(days=40)
    for event in (
        source_event("core", "C-1", "o1", 1, before, **account_opened("C-CNY")),
        source_event("core", "C-1", "o2", 1, before, **account_opened("C-USD", "USD")),
        source_event("core", "C-1", "b1", 2, before, **balance_changed("C-CNY", "CNY", 90_000_000)),
        source_event("core", "C-1", "b2", 2, before, **balance_changed("C-USD", "USD", 600_000)),
        source_event("core", "C-1", "s1", 3, T0 - dt.timedelta(days=5), **salary_paid("C-CNY")),
        source_event("core", "C-1", "b3", 4, T0, **balance_changed("C-CNY", "CNY", 91_500_000)),
        source_event("core", "C-1", "c1", 1, before, **consent(True)),
        source_event("core", "C-1", "c2", 1, before, **consent(False, pb.CONTACT_CHANNEL_EMAIL)),
        source_event(
            "core",
            "C-1",
            "r1",
            1,
            before,
            **risk_assessed(3, dt.date(2025, 11, 3), dt.date(2026, 11, 3)),
        ),
        source_event("core", "C-1", "i1", 1, T0 - dt.timedelta(days=2), **interaction()),
        source_event("cards", "K-1", "k1", 1, before, **card_issued("K-GOLD")),
        source_event("loans", "L-1", "m1", 1, before, **loan_drawn("L-MTG", 50_000_000)),
    ):
        await harness.source(event)
    return party_id


async def set_view(harness: Harness, party_id: str, view: Any) -> None:
    async with harness.database.engine.begin() as connection:
        await connection.execute(
            sa.update(schema.profile).where(schema.profile.c.party_id == party_id).values(view=view)
        )


async def stored_view(harness: Harness, party_id: str) -> ReadModel:
    async with harness.database.session() as session:
        data = await session.scalar(
            sa.select(schema.profile.c.view).where(schema.profile.c.party_id == party_id)
        )
    model = from_json(party_id, data)
    assert model is not None
    return model


async def fresh(harness: Harness, party_id: str) -> ProfileView:
    """The profile computed afresh: its read model removed first."""
    await set_view(harness, party_id, None)
    return await harness.profile(party_id)


async def tampered(harness: Harness, party_id: str) -> str:
    """Rewrites the stored tier reason, so that an answer from the read model shows."""
    model = await stored_view(harness, party_id)
    tier = dataclasses.replace(model.assessment.tier, reason="from the read model")
    assessment = dataclasses.replace(model.assessment, tier=tier)
    await set_view(harness, party_id, to_json(dataclasses.replace(model, assessment=assessment)))
    return tier.reason


async def test_the_profile_served_from_the_read_model_is_the_profile_computed_afresh(
    harness: Harness,
) -> None:
    party_id = await a_customer(harness)

    served = await harness.profile(party_id)
    computed = await fresh(harness, party_id)

    assert (served.facts, served.assessment) == (computed.facts, computed.assessment)
    assert served.facts is not None
    assert served.assessment is not None
    assert (len(served.facts.holdings), served.facts.birth_date) == (4, THIRTY)
    assert served.assessment.risk.effective_level is not None


async def test_get_profile_answers_from_the_read_model_while_it_is_as_of_today(
    harness: Harness,
) -> None:
    party_id = await a_customer(harness)

    reason = await tampered(harness, party_id)

    view = await harness.profile(party_id)
    assert view.assessment is not None
    assert view.assessment.tier.reason == reason


async def test_a_read_model_of_an_earlier_day_is_not_served(harness: Harness) -> None:
    party_id = await a_customer(harness)
    await tampered(harness, party_id)

    harness.now = T0 + dt.timedelta(days=1)  # the risk assessment expires on this day
    served = await harness.profile(party_id)

    computed = await fresh(harness, party_id)
    assert served.assessment is not None
    assert computed.assessment is not None
    assert served.assessment.tier.reason != "from the read model"
    assert (served.facts, served.assessment) == (computed.facts, computed.assessment)
    assert served.assessment.risk.effective_level is None


async def test_a_read_model_assessed_on_another_basis_is_not_served(harness: Harness) -> None:
    party_id = await a_customer(harness)
    await tampered(harness, party_id)
    other_release = ProfileQueries(harness.unit, Facts(CONFIG, harness.clock, basis="other"))

    view = await other_release.get_profile(party_id)

    assert view.assessment is not None
    assert view.assessment.tier.reason != "from the read model"


async def test_a_change_that_tells_nothing_still_rewrites_the_read_model(
    harness: Harness,
) -> None:
    party_id = await a_customer(harness)
    told = len(await harness.changes())

    # A contact yesterday: the customer's recency moves, nothing a ProfileChanged tells.
    await harness.source(
        source_event("core", "C-1", "i2", 2, T0 - dt.timedelta(days=1), **interaction())
    )

    assert len(await harness.changes()) == told
    served = await harness.profile(party_id)
    computed = await fresh(harness, party_id)
    assert served.assessment is not None
    assert served.assessment.value.rfm.recency_days == 1
    assert (served.facts, served.assessment) == (computed.facts, computed.assessment)


async def test_a_read_model_that_does_not_decode_is_not_served(harness: Harness) -> None:
    party_id = await a_customer(harness)
    expected = await harness.profile(party_id)
    model = await stored_view(harness, party_id)
    data = to_json(model)
    data["facts"] = data["facts"][:-1]  # a field short, as after a release added one

    await set_view(harness, party_id, data)

    view = await harness.profile(party_id)
    assert (view.facts, view.assessment) == (expected.facts, expected.assessment)


async def test_a_profile_read_shows_no_interactions_whichever_way_it_was_computed(
    harness: Harness,
) -> None:
    party_id = await a_customer(harness)

    served = await harness.profile(party_id)
    computed = await fresh(harness, party_id)

    assert served.facts is not None
    assert computed.facts is not None
    assert served.facts.interactions == computed.facts.interactions == ()
    assert served.assessment is not None
    assert served.assessment.value.rfm.recency_days == 2


async def test_reads_outside_a_transaction_answer_as_reads_in_one(harness: Harness) -> None:
    """The service reads through SqlProfileReads (autocommit on PostgreSQL)."""
    party_id = await a_customer(harness)
    reads = ProfileQueries(SqlProfileReads(harness.database), harness.facts)

    outside = await reads.get_profile(party_id)
    by_record = await reads.get_profile(source=CARDS)
    page = await reads.list_interactions(party_id, 10, "")

    inside = await harness.profile(party_id)
    assert outside == inside
    assert by_record == inside
    assert page == await harness.queries.list_interactions(party_id, 10, "")
    assert len(page.interactions) == 1


@pytest.fixture
async def pg_harness(postgres_cluster: PostgresCluster) -> AsyncIterator[Harness]:
    started = await Harness.start(postgres_cluster.create_database())
    try:
        yield started
    finally:
        await started.close()


async def test_a_profile_computed_afresh_reads_its_facts_from_one_moment(
    pg_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accounts, balances and the rest are read in several statements: a change committed
    between two of them is in none of them (and in the next answer). PostgreSQL: on SQLite
    the reads' transaction keeps every writer out."""
    harness = pg_harness
    party_id = await a_customer(harness)
    harness.now = T0 + dt.timedelta(days=1)  # the read model is yesterday's: computed afresh
    reads = SqlProfileReads(harness.database)
    queries = ProfileQueries(reads, harness.facts, snapshots=reads.snapshot)
    before = await queries.get_profile(party_id)
    by_party = SqlFactStore._by_party
    changed: list[bool] = []

    async def usd_leaves_after_the_first_read(
        store: SqlFactStore, query: Any, parameters: dict[str, Any]
    ) -> dict[str, list[Any]]:
        found = await by_party(store, query, parameters)
        if not changed:
            changed.append(True)
            # The USD goes (the accounts were read; the balances are still to be read).
            later = T0 + dt.timedelta(hours=20)
            await harness.source(
                source_event("core", "C-1", "b9", 5, later, **balance_changed("C-USD", "USD", 0))
            )
        return found

    monkeypatch.setattr(SqlFactStore, "_by_party", usd_leaves_after_the_first_read)
    during = await queries.get_profile(party_id)
    monkeypatch.undo()
    after = await queries.get_profile(party_id)

    assert changed == [True]
    assert during == before
    assert after.facts is not None
    usd = [h.balance.minor_units for h in after.facts.holdings if h.account_id == "C-USD"]
    assert usd == [0]
