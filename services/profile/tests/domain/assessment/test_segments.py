"""Segments from declarative rules, each rule against the facts that put a party in or out."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from zhike_profile.domain.assessment import AssessmentConfig, assess, parse_config
from zhike_profile.domain.assessment.segments import age_in_years
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
SOURCE = SourceKey("core_deposits", "D-1")
NOBODY = PartyFacts(party_id="p", as_of=AS_OF)


def segments(facts: PartyFacts, config: AssessmentConfig) -> set[str]:
    return {segment.name for segment in assess(facts, config).segments}


def holding(line: ProductLine, money: Money, card_tier: CardTier | None = None) -> Holding:
    return Holding(SOURCE, "A-1", line, "P", money, dt.date(2020, 1, 1), card_tier=card_tier)


def visit(days_ago: int) -> Interaction:
    at = dt.datetime.combine(AS_OF - dt.timedelta(days=days_ago), dt.time(9), dt.UTC)
    return Interaction(InteractionKind.BRANCH_VISIT, at, SOURCE, "0101")


def salary(*months: int) -> tuple[MonthlyActivity, ...]:
    return tuple(
        MonthlyActivity(dt.date(2026, m, 1), 5, 0, 20_000_00, 0, salary_credit_cny_minor=20_000_00)
        for m in months
    )


def test_usd_holder_holds_usd_above_zero(config: AssessmentConfig) -> None:
    usd = holding(ProductLine.SAVINGS, Money("USD", 6_000_00))
    assert "usd_holder" in segments(dataclasses.replace(NOBODY, holdings=(usd,)), config)
    emptied = dataclasses.replace(usd, balance=Money("USD", 0))
    assert "usd_holder" not in segments(dataclasses.replace(NOBODY, holdings=(emptied,)), config)


def test_a_usd_card_debt_does_not_make_a_usd_holder(config: AssessmentConfig) -> None:
    debt = holding(ProductLine.CREDIT_CARD, Money("USD", 500_00))
    assert "usd_holder" not in segments(dataclasses.replace(NOBODY, holdings=(debt,)), config)


def test_dormant_means_no_interaction_for_180_days(config: AssessmentConfig) -> None:
    assert "dormant" in segments(NOBODY, config)
    assert "dormant" in segments(dataclasses.replace(NOBODY, interactions=(visit(180),)), config)
    assert "dormant" not in segments(
        dataclasses.replace(NOBODY, interactions=(visit(179),)), config
    )


@pytest.mark.parametrize(
    ("birth", "salary_months", "expected"),
    [
        (dt.date(1995, 6, 1), (10, 11, 12), True),  # 31, three salary months
        (dt.date(2001, 12, 1), (11, 12), True),  # 25 today, two of the last three months
        (dt.date(2001, 12, 2), (11, 12), False),  # 25 tomorrow
        (dt.date(1990, 12, 2), (11, 12), True),  # 35, 36 tomorrow
        (dt.date(1990, 12, 1), (11, 12), False),  # 36 today
        (dt.date(1995, 6, 1), (12,), False),  # one salary month only
        (dt.date(1995, 6, 1), (8, 9), False),  # salary, but not in the last three months
        (None, (10, 11, 12), False),  # no birth date: the age is unknown, not "young"
    ],
)
def test_young_professional_is_aged_25_to_35_with_salary_credits(
    config: AssessmentConfig,
    birth: dt.date | None,
    salary_months: tuple[int, ...],
    expected: bool,
) -> None:
    facts = dataclasses.replace(NOBODY, birth_date=birth, activity=salary(*salary_months))
    assert ("young_professional" in segments(facts, config)) is expected


def test_premium_follows_the_tier(config: AssessmentConfig) -> None:
    platinum_card = holding(ProductLine.CREDIT_CARD, Money("CNY", 0), CardTier.PLATINUM)
    assert "premium" in segments(dataclasses.replace(NOBODY, holdings=(platinum_card,)), config)
    assert "premium" not in segments(NOBODY, config)


def rules(documents: dict[str, Any], *extra: dict[str, str]) -> AssessmentConfig:
    documents["segments"]["rules"] = list(extra)
    return parse_config(documents)


def test_every_field_and_function_can_be_used(documents: dict[str, Any]) -> None:
    config = rules(
        documents,
        {
            "name": "everything",
            "description": "uses the whole schema",
            "condition": """
                age == 31 && tier == "gold" && value_band in ["low", "medium", "high"]
                && total_assets_cny >= 600000 && total_liabilities_cny == 0
                && average_assets_cny == 0 && annual_revenue_cny > 0
                && days_since_last_contact == 0 && risk_level == 3 && risk_status == "valid"
                && transactions_12m == 5 && balance("CNY") == 600000.00 && holds("savings")
                && !holds("mortgage") && has_card("gold") && !has_card("diamond")
                && interactions(7) == 1 && interactions_of("branch_visit", 7) == 1
                && interactions_of("message_sent", 30) == 0 && salary_months(1) == 1
            """,
        },
    )
    facts = PartyFacts(
        party_id="p",
        as_of=AS_OF,
        holdings=(
            holding(ProductLine.SAVINGS, Money("CNY", 600_000_00)),
            holding(ProductLine.CREDIT_CARD, Money("CNY", 0), CardTier.PLATINUM),
        ),
        interactions=(visit(3),),
        activity=salary(12),  # transactions this month: contact today
        birth_date=dt.date(1995, 6, 1),
        risk=RiskAssessment(CustomerRisk.C3, dt.date(2026, 1, 1), dt.date(2027, 1, 1)),
    )
    assert segments(facts, config) == {"everything"}


def test_a_risk_level_counts_only_while_valid(documents: dict[str, Any]) -> None:
    config = rules(
        documents,
        {"name": "balanced", "description": "C3 or above", "condition": "risk_level >= 3"},
        {"name": "review", "description": "expired", "condition": 'risk_status == "expired"'},
    )
    assessed = RiskAssessment(CustomerRisk.C4, dt.date(2025, 12, 1), dt.date(2026, 12, 1))
    facts = dataclasses.replace(NOBODY, as_of=dt.date(2026, 11, 30), risk=assessed)
    assert segments(facts, config) == {"balanced"}
    assert segments(dataclasses.replace(facts, as_of=AS_OF), config) == {"review"}


@pytest.mark.parametrize(
    ("birth", "age"),
    [
        (dt.date(2001, 12, 1), 25),  # the birthday itself
        (dt.date(2001, 12, 2), 24),  # the day before it
        (dt.date(2000, 2, 29), 26),  # a 29 February birthday, 1 March in other years
        (dt.date(1876, 12, 1), 150),  # the oldest age told
        (dt.date(1875, 12, 1), None),  # 151: a broken birth date, not a person
        (dt.date(2026, 12, 2), None),  # born tomorrow
        (None, None),
    ],
)
def test_an_age_is_whole_years_on_the_day_and_none_beyond_150(
    birth: dt.date | None, age: int | None
) -> None:
    assert age_in_years(birth, AS_OF) == age
