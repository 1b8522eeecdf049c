"""The customer value model: 12-month revenue by product line, RFM, the band and its drivers."""

from __future__ import annotations

import dataclasses
import datetime as dt

from zhike_profile.domain.assessment import AssessmentConfig, assess
from zhike_profile.domain.assessment.value import assess_rfm
from zhike_profile.domain.facts import (
    CardTier,
    Holding,
    Interaction,
    InteractionKind,
    Money,
    MonthlyActivity,
    PartyFacts,
    ProductLine,
    SourceKey,
)

AS_OF = dt.date(2026, 12, 1)
SOURCE = SourceKey("core_deposits", "D-1")


def holding(
    line: ProductLine, money: Money, account: str, card_tier: CardTier | None = None
) -> Holding:
    return Holding(SOURCE, account, line, "P", money, dt.date(2020, 1, 1), card_tier=card_tier)


def spend_months(
    *months: int, credit: int = 0, transactions: int = 0
) -> tuple[MonthlyActivity, ...]:
    return tuple(
        MonthlyActivity(
            dt.date(2026, m, 1), transactions, 0, 0, 0, credit_card_spend_cny_minor=credit
        )
        for m in months
    )


RELATIONSHIP = PartyFacts(
    party_id="p",
    as_of=AS_OF,
    holdings=(
        holding(ProductLine.TIME_DEPOSIT, Money("CNY", 1_000_000_00), "T-1"),
        holding(ProductLine.SAVINGS, Money("USD", 10_000_00), "S-1"),
        holding(ProductLine.MORTGAGE, Money("CNY", 1_200_000_00), "M-1"),
        holding(ProductLine.CREDIT_CARD, Money("CNY", 0), "K-1", CardTier.PLATINUM),
        holding(ProductLine.DEBIT_CARD, Money("CNY", 0), "K-2"),
    ),
    activity=spend_months(*range(1, 13), credit=8_000_00),
)


def test_revenue_is_balance_times_rate_plus_card_fees_and_interchange(
    config: AssessmentConfig,
) -> None:
    value = assess(RELATIONSHIP, config).value
    by_line = {c.product_line: c.annual_revenue_cny_minor for c in value.contributions}
    assert by_line == {
        ProductLine.MORTGAGE: 10_800_00,  # 1,200,000.00 × 0.90%
        ProductLine.TIME_DEPOSIT: 6_000_00,  # 1,000,000.00 × 0.60%
        ProductLine.CREDIT_CARD: 1_632_00,  # fee 1,200.00 + 96,000.00 × 0.45%
        ProductLine.SAVINGS: 994_60,  # USD 10,000.00 × 7.1043 × 1.40% = 994.602
        ProductLine.DEBIT_CARD: 10_00,  # fee
    }
    assert value.annual_revenue_cny_minor == 19_436_60
    assert (value.band, value.band_label) == ("high", "High")


def test_what_drove_it_names_the_top_three_contributions_in_words(
    config: AssessmentConfig,
) -> None:
    assert assess(RELATIONSHIP, config).value.drivers == (
        "mortgage: CNY 1,200,000.00 × 0.90% = CNY 10,800.00 a year",
        "time deposit: CNY 1,000,000.00 × 0.60% = CNY 6,000.00 a year",
        "credit card: annual fees CNY 1,200.00 (1 card) + spend CNY 96,000.00 a year × 0.45%"
        " = CNY 1,632.00 a year",
    )


def test_a_card_with_balances_in_two_currencies_pays_one_annual_fee(
    config: AssessmentConfig,
) -> None:
    facts = PartyFacts(
        party_id="p",
        as_of=AS_OF,
        holdings=(
            holding(ProductLine.CREDIT_CARD, Money("CNY", 0), "K-1", CardTier.PLATINUM),
            holding(ProductLine.CREDIT_CARD, Money("USD", 10_00), "K-1", CardTier.PLATINUM),
        ),
    )
    (card,) = assess(facts, config).value.contributions
    assert card.annual_revenue_cny_minor == 1_200_00


def test_a_short_card_history_is_scaled_to_twelve_months(config: AssessmentConfig) -> None:
    facts = PartyFacts(
        party_id="p",
        as_of=AS_OF,
        holdings=(holding(ProductLine.CREDIT_CARD, Money("CNY", 0), "K-1", CardTier.STANDARD),),
        activity=spend_months(10, 11, 12, credit=10_000_00),
    )
    (card,) = assess(facts, config).value.contributions
    # 30,000.00 over 3 months is 120,000.00 a year; × 0.45% = 540.00 (no fee for standard).
    assert card.annual_revenue_cny_minor == 540_00
    assert "3 month(s) scaled to 12" in card.explanation


def test_a_gap_in_the_card_history_is_not_scaled_up(config: AssessmentConfig) -> None:
    facts = PartyFacts(
        party_id="p",
        as_of=AS_OF,
        holdings=(holding(ProductLine.CREDIT_CARD, Money("CNY", 0), "K-1", CardTier.STANDARD),),
        activity=spend_months(1, 12, credit=12_000_00),
    )
    (card,) = assess(facts, config).value.contributions
    assert card.annual_revenue_cny_minor == 108_00  # 24,000.00 × 0.45%


def test_the_band_is_reached_exactly_at_its_cut_off(config: AssessmentConfig) -> None:
    def band(balance: int) -> str:
        facts = PartyFacts(
            party_id="p",
            as_of=AS_OF,
            holdings=(holding(ProductLine.INVESTMENT, Money("CNY", balance), "I-1"),),
        )
        return assess(facts, config).value.band

    assert band(62_500_00) == "medium"  # × 0.80% = 500.00
    assert band(62_499_00) == "low"  # 499.99
    assert band(0) == "low"


def test_no_revenue_means_no_drivers(config: AssessmentConfig) -> None:
    value = assess(PartyFacts(party_id="p", as_of=AS_OF), config).value
    assert value.annual_revenue_cny_minor == 0
    assert value.drivers == ()


def contact(kind: InteractionKind, days_ago: int) -> Interaction:
    at = dt.datetime.combine(AS_OF - dt.timedelta(days=days_ago), dt.time(10), dt.UTC)
    return Interaction(kind, at, SOURCE)


def test_recency_counts_days_since_the_customers_last_contact(config: AssessmentConfig) -> None:
    cutoffs = config.value.rfm
    facts = PartyFacts(party_id="p", as_of=AS_OF)
    assert assess_rfm(facts, cutoffs).recency_days is None
    assert assess_rfm(facts, cutoffs).recency_score == 1
    for days_ago, score in [(0, 5), (7, 5), (8, 4), (30, 4), (31, 3), (180, 2), (181, 1)]:
        visited = dataclasses.replace(
            facts, interactions=(contact(InteractionKind.BRANCH_VISIT, days_ago),)
        )
        rfm = assess_rfm(visited, cutoffs)
        assert (rfm.recency_days, rfm.recency_score) == (days_ago, score)


def test_messages_the_bank_sent_are_not_the_customers_contact(config: AssessmentConfig) -> None:
    facts = PartyFacts(
        party_id="p",
        as_of=AS_OF,
        interactions=(contact(InteractionKind.MESSAGE_SENT, 1),),
    )
    rfm = assess_rfm(facts, config.value.rfm)
    assert rfm.recency_days is None
    assert rfm.frequency == 0


def test_a_month_with_transactions_counts_as_contact_on_its_last_day(
    config: AssessmentConfig,
) -> None:
    facts = PartyFacts(party_id="p", as_of=AS_OF, activity=spend_months(10, transactions=3))
    assert assess_rfm(facts, config.value.rfm).recency_days == 31  # since 31 October


def test_frequency_and_monetary_cover_twelve_months(config: AssessmentConfig) -> None:
    old = MonthlyActivity(dt.date(2025, 12, 1), 500, 9_000_000_00, 0, 0)  # 12 months back: out
    recent = MonthlyActivity(dt.date(2026, 6, 1), 30, 40_000_00, 80_000_00, 0)
    facts = PartyFacts(
        party_id="p",
        as_of=AS_OF,
        activity=(old, recent),
        interactions=(
            contact(InteractionKind.APP_LOGIN, 10),
            contact(InteractionKind.CALL_CENTRE_CALL, 364),
            contact(InteractionKind.ATM_USE, 365),  # a year ago to the day: out
        ),
    )
    rfm = assess_rfm(facts, config.value.rfm)
    assert (rfm.frequency, rfm.monetary_cny_minor) == (32, 120_000_00)
    assert (rfm.frequency_score, rfm.monetary_score) == (2, 3)  # 32 ≥ 12; 120,000 ≥ 100,000
    assert rfm.code == "423"
