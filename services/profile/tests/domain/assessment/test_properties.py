"""Properties of the whole assessment over generated parties (Hypothesis)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from zhike_profile.domain.assessment import (
    AssessmentConfig,
    SegmentEntered,
    SegmentLeft,
    assess,
    changes,
)
from zhike_profile.domain.facts import (
    CardTier,
    CustomerRisk,
    Holding,
    Interaction,
    InteractionKind,
    Money,
    MonthlyActivity,
    PartyFacts,
    ProductLine,
    RiskAssessment,
    SourceKey,
)

AS_OF = dt.date(2026, 12, 1)
CARD_LINES = (ProductLine.CREDIT_CARD, ProductLine.DEBIT_CARD)
OTHER_LINES = tuple(line for line in ProductLine if line not in CARD_LINES)

sources = st.builds(
    SourceKey,
    st.sampled_from(["core_deposits", "card_centre", "loans", "wealth"]),
    st.sampled_from(["R-1", "R-2", "R-3"]),
)
money = st.one_of(
    st.builds(Money, st.sampled_from(["CNY", "USD", "HKD"]), st.integers(-(10**9), 10**11)),
    st.builds(Money, st.just("JPY"), st.integers(0, 10**9), st.just(0)),
    st.builds(Money, st.just("CHF"), st.integers(0, 10**6)),  # no rate: left out
)


@st.composite
def holdings(draw: st.DrawFn, lines: tuple[ProductLine, ...] = tuple(ProductLine)) -> Holding:
    line = draw(st.sampled_from(lines))
    return Holding(
        source=draw(sources),
        account_id=draw(st.sampled_from(["A-1", "A-2", "A-3", "A-4"])),
        product_line=line,
        product_code="P",
        balance=draw(money),
        opened_on=dt.date(2020, 1, 1),
        closed_on=draw(st.none() | st.just(dt.date(2026, 3, 1))),
        card_tier=draw(st.sampled_from(CardTier)) if line in CARD_LINES else None,
        branch_code=draw(st.sampled_from(["", "0101", "0388"])),
    )


@st.composite
def months(draw: st.DrawFn) -> tuple[MonthlyActivity, ...]:
    chosen = draw(st.lists(st.integers(1, 12), unique=True, max_size=6))
    amounts = st.integers(0, 10**10)
    return tuple(
        MonthlyActivity(
            month=dt.date(2026, m, 1),
            transactions=draw(st.integers(0, 200)),
            debit_cny_minor=draw(amounts),
            credit_cny_minor=draw(amounts),
            average_assets_cny_minor=draw(amounts),
            salary_credit_cny_minor=draw(st.sampled_from([0, 1_500_000])),
            credit_card_spend_cny_minor=draw(amounts),
            debit_card_spend_cny_minor=draw(amounts),
        )
        for m in sorted(chosen)
    )


interactions = st.builds(
    Interaction,
    st.sampled_from(InteractionKind),
    st.integers(0, 400).map(
        lambda days: dt.datetime.combine(AS_OF - dt.timedelta(days=days), dt.time(12), dt.UTC)
    ),
    sources,
)
risks = st.none() | st.builds(
    RiskAssessment,
    st.sampled_from(CustomerRisk),
    st.dates(dt.date(2025, 1, 1), dt.date(2026, 12, 1)),
    st.dates(dt.date(2026, 1, 1), dt.date(2027, 12, 1)),
)
parties = st.builds(
    PartyFacts,
    party_id=st.just("p"),
    as_of=st.just(AS_OF),
    holdings=st.lists(holdings(), max_size=6).map(tuple),
    activity=months(),
    interactions=st.lists(interactions, max_size=5).map(tuple),
    risk=risks,
    birth_date=st.none() | st.dates(dt.date(1940, 1, 1), dt.date(2010, 1, 1)),
)


@given(parties)
def test_an_assessment_compared_with_itself_has_no_changes(
    config: AssessmentConfig, facts: PartyFacts
) -> None:
    first = assess(facts, config)
    assert assess(facts, config) == first
    assert changes(first, first) == ()


@given(parties, st.randoms(use_true_random=False))
def test_the_order_holdings_and_interactions_arrive_in_changes_nothing(
    config: AssessmentConfig, facts: PartyFacts, random: Random
) -> None:
    shuffled_holdings = list(facts.holdings)
    shuffled_interactions = list(facts.interactions)
    random.shuffle(shuffled_holdings)
    random.shuffle(shuffled_interactions)
    shuffled = dataclasses.replace(
        facts, holdings=tuple(shuffled_holdings), interactions=tuple(shuffled_interactions)
    )
    assert assess(shuffled, config) == assess(facts, config)


@given(parties, st.sampled_from(["", "0101", "0388", "9999"]))
def test_no_part_of_the_assessment_depends_on_a_branch_code(
    config: AssessmentConfig, facts: PartyFacts, branch: str
) -> None:
    moved = tuple(dataclasses.replace(h, branch_code=branch) for h in facts.holdings)
    assert assess(dataclasses.replace(facts, holdings=moved), config) == assess(facts, config)


@given(parties, holdings(OTHER_LINES))
def test_adding_a_zero_balance_account_loan_or_investment_changes_nothing(
    config: AssessmentConfig, facts: PartyFacts, extra: Holding
) -> None:
    # Cards are the exception by design: an open card carries its annual fee and its tier.
    zero = dataclasses.replace(extra, balance=dataclasses.replace(extra.balance, minor_units=0))
    more = dataclasses.replace(facts, holdings=(*facts.holdings, zero))
    assert assess(more, config) == assess(facts, config)


@given(parties, st.integers(0, 10**11))
def test_more_average_assets_never_lower_the_tier(
    config: AssessmentConfig, facts: PartyFacts, extra: int
) -> None:
    richer_months = tuple(
        dataclasses.replace(m, average_assets_cny_minor=m.average_assets_cny_minor + extra)
        for m in facts.activity
    )
    richer = dataclasses.replace(facts, activity=richer_months)
    assert assess(richer, config).tier.rank >= assess(facts, config).tier.rank


@given(parties, parties)
def test_a_segment_entered_one_way_is_left_the_other_way(
    config: AssessmentConfig, one: PartyFacts, other: PartyFacts
) -> None:
    a, b = assess(one, config), assess(other, config)
    entered = {c.segment for c in changes(a, b) if isinstance(c, SegmentEntered)}
    left_back = {c.segment for c in changes(b, a) if isinstance(c, SegmentLeft)}
    assert entered == left_back
    assert entered == {s.name for s in b.segments} - {s.name for s in a.segments}
