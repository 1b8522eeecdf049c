"""The bank-wide tier: from the average assets of the whole relationship and any premium card,
with its reason in words; and the entitlements that follow it."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from zhike_profile.domain.assessment import AssessmentConfig, assess
from zhike_profile.domain.facts import (
    CardTier,
    Holding,
    Money,
    MonthlyActivity,
    PartyFacts,
    ProductLine,
    SourceKey,
)

AS_OF = dt.date(2026, 12, 1)
CARDS = SourceKey("card_centre", "C-9")
DEPOSITS = SourceKey("core_deposits", "D-1")


def month(first: dt.date, average_assets_cny_minor: int) -> MonthlyActivity:
    return MonthlyActivity(first, 10, 0, 0, average_assets_cny_minor)


def averages(*cny_minor: int) -> tuple[MonthlyActivity, ...]:
    """Monthly averages for the last len(cny_minor) months, oldest first, ending in Dec 2026."""
    months = [dt.date(2026, 12 - n, 1) for n in reversed(range(len(cny_minor)))]
    return tuple(month(first, amount) for first, amount in zip(months, cny_minor, strict=True))


def card(tier: CardTier, branch: str = "0101", closed: dt.date | None = None) -> Holding:
    return Holding(
        CARDS,
        "K-1",
        ProductLine.CREDIT_CARD,
        "CC",
        Money("CNY", 0),
        dt.date(2025, 1, 1),
        closed_on=closed,
        card_tier=tier,
        branch_code=branch,
    )


def party(*holdings: Holding, activity: tuple[MonthlyActivity, ...] = ()) -> PartyFacts:
    return PartyFacts(party_id="p", as_of=AS_OF, holdings=holdings, activity=activity)


def test_gold_by_average_assets_names_the_figure_and_the_threshold(
    config: AssessmentConfig,
) -> None:
    tier = assess(party(activity=averages(600_000_00, 612_000_00, 624_000_00)), config).tier
    assert (tier.name, tier.label) == ("gold", "Gold")
    assert tier.reason == "Gold: average assets CNY 612,000.00 ≥ 500,000.00"


def test_each_threshold_is_reached_exactly_at_its_minimum(config: AssessmentConfig) -> None:
    for amount, expected in [
        (49_999_99, "standard"),
        (50_000_00, "silver"),
        (499_999_99, "silver"),
        (500_000_00, "gold"),
        (2_000_000_00, "platinum"),
        (6_000_000_00, "private_banking"),
    ]:
        assert assess(party(activity=averages(amount)), config).tier.name == expected, amount


def test_standard_says_how_far_the_next_tier_is(config: AssessmentConfig) -> None:
    tier = assess(party(activity=averages(12_000_00)), config).tier
    assert tier.reason == "Standard: average assets CNY 12,000.00 < 50,000.00"


def test_the_average_covers_the_last_three_months_only(config: AssessmentConfig) -> None:
    # A large balance five months ago does not count; the three recent months average 60,000.
    history = averages(9_000_000_00, 9_000_000_00, 50_000_00, 60_000_00, 70_000_00)
    tier = assess(party(activity=history), config).tier
    assert tier.name == "silver"
    assert tier.average_assets_cny_minor == 60_000_00


def test_a_new_customer_without_monthly_figures_is_judged_on_assets_today(
    config: AssessmentConfig,
) -> None:
    deposit = Holding(
        DEPOSITS, "A-1", ProductLine.SAVINGS, "S", Money("CNY", 700_000_00), dt.date(2026, 12, 1)
    )
    tier = assess(party(deposit), config).tier
    assert tier.name == "gold"
    assert tier.reason == (
        "Gold: assets today (no monthly average yet) CNY 700,000.00 ≥ 500,000.00"
    )


def test_a_platinum_card_gives_at_least_gold_and_says_where_it_was_issued(
    config: AssessmentConfig,
) -> None:
    tier = assess(party(card(CardTier.PLATINUM), activity=averages(1_000_00)), config).tier
    assert tier.name == "gold"
    assert tier.reason == "Gold: holds a platinum card (card centre)"


def test_a_better_card_gives_at_least_what_a_lesser_one_does(config: AssessmentConfig) -> None:
    assert assess(party(card(CardTier.DIAMOND)), config).tier.name == "platinum"
    assert assess(party(card(CardTier.GOLD)), config).tier.name == "silver"
    assert assess(party(card(CardTier.STANDARD)), config).tier.name == "standard"


def test_assets_above_the_card_floor_win_and_both_reasons_are_kept_when_equal(
    config: AssessmentConfig,
) -> None:
    rich = assess(party(card(CardTier.PLATINUM), activity=averages(2_500_000_00)), config).tier
    assert rich.name == "platinum"
    assert rich.reasons == ("Platinum: average assets CNY 2,500,000.00 ≥ 2,000,000.00",)
    both = assess(party(card(CardTier.PLATINUM), activity=averages(600_000_00)), config).tier
    assert both.reasons == (
        "Gold: average assets CNY 600,000.00 ≥ 500,000.00",
        "Gold: holds a platinum card (card centre)",
    )


def test_a_closed_card_gives_nothing(config: AssessmentConfig) -> None:
    closed = card(CardTier.PLATINUM, closed=dt.date(2026, 6, 30))
    assert assess(party(closed), config).tier.name == "standard"


def test_gold_by_one_branchs_card_centre_is_gold_with_the_same_reason_at_every_branch(
    config: AssessmentConfig,
) -> None:
    seen = {
        assess(party(card(CardTier.PLATINUM, branch=branch)), config).tier
        for branch in ("0101", "0388", "9999", "")
    }
    assert len(seen) == 1


def test_entitlements_follow_the_tier(config: AssessmentConfig) -> None:
    gold = assess(party(card(CardTier.PLATINUM)), config)
    assert [e.code for e in gold.entitlements] == ["priority_queue", "card_fee_waiver"]
    standard = assess(party(), config)
    assert standard.entitlements == ()


@given(
    low=st.integers(min_value=0, max_value=10**12),
    extra=st.integers(min_value=0, max_value=10**12),
    card_tier=st.none() | st.sampled_from(CardTier),
)
def test_the_tier_is_monotone_in_assets(
    config: AssessmentConfig, low: int, extra: int, card_tier: CardTier | None
) -> None:
    cards = () if card_tier is None else (card(card_tier),)
    poorer = assess(party(*cards, activity=averages(low, low, low)), config).tier
    richer = assess(party(*cards, activity=averages(low, low + extra, low)), config).tier
    assert richer.rank >= poorer.rank


@given(
    branches=st.lists(st.text(max_size=6), min_size=3, max_size=3),
    card_tier=st.sampled_from(CardTier),
    amount=st.integers(min_value=0, max_value=10**11),
)
def test_the_tier_does_not_depend_on_the_holdings_branch_code(
    config: AssessmentConfig, branches: list[str], card_tier: CardTier, amount: int
) -> None:
    deposit = Holding(DEPOSITS, "A-1", ProductLine.SAVINGS, "S", Money("CNY", amount), AS_OF)
    base = party(card(card_tier), deposit)
    reference = assess(base, config).tier
    for branch in branches:
        moved = tuple(dataclasses.replace(h, branch_code=branch) for h in base.holdings)
        assert assess(dataclasses.replace(base, holdings=moved), config).tier == reference
