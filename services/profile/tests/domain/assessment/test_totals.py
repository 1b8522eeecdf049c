"""Total assets and liabilities in CNY, from every open holding at the day's rates."""

from __future__ import annotations

import datetime as dt

from zhike_profile.domain.assessment import AssessmentConfig
from zhike_profile.domain.assessment.totals import assess_totals
from zhike_profile.domain.facts import Holding, Money, PartyFacts, ProductLine, SourceKey

AS_OF = dt.date(2026, 12, 1)
DEPOSITS = SourceKey("core_deposits", "D-1")


def holding(
    line: ProductLine, money: Money, account: str = "A-1", closed: dt.date | None = None
) -> Holding:
    return Holding(DEPOSITS, account, line, "P", money, dt.date(2020, 1, 1), closed_on=closed)


def facts(*holdings: Holding) -> PartyFacts:
    return PartyFacts(party_id="p", as_of=AS_OF, holdings=holdings)


def test_assets_in_several_currencies_add_up_in_cny(config: AssessmentConfig) -> None:
    totals = assess_totals(
        facts(
            holding(ProductLine.SAVINGS, Money("CNY", 10_000_00), "A-1"),
            holding(ProductLine.SAVINGS, Money("USD", 6_000_00), "A-2"),
            holding(ProductLine.INVESTMENT, Money("HKD", 1_000_00), "A-3"),
        ),
        config.rates,
    )
    # 10,000.00 + 6,000.00 × 7.1043 + 1,000.00 × 0.9102 = 10,000.00 + 42,625.80 + 910.20
    assert totals.assets == Money("CNY", 53_536_00)
    assert totals.liabilities == Money("CNY", 0)
    assert totals.assets_by_currency == (
        Money("CNY", 10_000_00),
        Money("HKD", 1_000_00),
        Money("USD", 6_000_00),
    )
    assert [str(rate) for rate in totals.rates_used] == [
        "HKD 1 = CNY 0.9102 from 2026-01-02",
        "USD 1 = CNY 7.1043 from 2026-07-01",
    ]


def test_loans_and_card_balances_are_liabilities(config: AssessmentConfig) -> None:
    totals = assess_totals(
        facts(
            holding(ProductLine.MORTGAGE, Money("CNY", 1_200_000_00), "L-1"),
            holding(ProductLine.CREDIT_CARD, Money("CNY", 3_000_00), "K-1"),
            holding(ProductLine.CURRENT_ACCOUNT, Money("CNY", 5_000_00), "A-1"),
        ),
        config.rates,
    )
    assert totals.assets == Money("CNY", 5_000_00)
    assert totals.liabilities == Money("CNY", 1_203_000_00)
    assert totals.net_worth == Money("CNY", -1_198_000_00)


def test_an_overdraft_is_a_liability_and_an_overpaid_card_an_asset(
    config: AssessmentConfig,
) -> None:
    totals = assess_totals(
        facts(
            holding(ProductLine.CURRENT_ACCOUNT, Money("CNY", -200_00), "A-1"),
            holding(ProductLine.CREDIT_CARD, Money("CNY", -50_00), "K-1"),
        ),
        config.rates,
    )
    assert totals.assets == Money("CNY", 50_00)
    assert totals.liabilities == Money("CNY", 200_00)


def test_closed_holdings_count_for_nothing(config: AssessmentConfig) -> None:
    closed = holding(ProductLine.SAVINGS, Money("CNY", 9_999_00), closed=dt.date(2026, 5, 1))
    assert assess_totals(facts(closed), config.rates).assets == Money("CNY", 0)


def test_a_currency_without_a_rate_is_left_out_and_named(config: AssessmentConfig) -> None:
    totals = assess_totals(
        facts(
            holding(ProductLine.SAVINGS, Money("CNY", 100_00), "A-1"),
            holding(ProductLine.SAVINGS, Money("CHF", 100_00), "A-2"),
        ),
        config.rates,
    )
    assert totals.assets == Money("CNY", 100_00)
    assert totals.unpriced_currencies == ("CHF",)
    assert Money("CHF", 100_00) in totals.assets_by_currency


def test_the_total_is_rounded_once_not_per_holding(config: AssessmentConfig) -> None:
    # JPY 1 is CNY 0.04512: three of them are 0.13536 → CNY 0.14, where rounding each
    # holding first would give 0.05 × 3 = 0.15.
    totals = assess_totals(
        facts(*(holding(ProductLine.SAVINGS, Money("JPY", 1, 0), f"J-{n}") for n in range(3))),
        config.rates,
    )
    assert totals.assets == Money("CNY", 14)
