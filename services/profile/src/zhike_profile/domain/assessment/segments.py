"""Segments from declarative rules: a name, a description and a condition over the facts.

The fields and functions a condition may use are the schema below (docs/profile-value-model.md
lists them). Amounts are CNY (or the named currency) in major units, as exact decimals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from zhike_profile.domain.assessment.expressions import (
    UNKNOWN,
    Condition,
    Environment,
    FieldSpec,
    FunctionSpec,
    Param,
    Schema,
    Type,
    Value,
)
from zhike_profile.domain.assessment.money import CONTEXT, to_major
from zhike_profile.domain.assessment.risk import RiskStatus, RiskView
from zhike_profile.domain.assessment.tier import TierResult
from zhike_profile.domain.assessment.totals import Totals
from zhike_profile.domain.assessment.value import (
    CUSTOMER_INTERACTIONS,
    CustomerValue,
    last_twelve_months,
)
from zhike_profile.domain.facts import CardTier, InteractionKind, PartyFacts, ProductLine

NAME_PATTERN = r"[a-z][a-z0-9_]*"


@dataclass(frozen=True)
class SegmentRule:
    name: str  # "usd_holder": what events and searches use
    description: str  # "Holds USD above zero"
    condition: Condition


@dataclass(frozen=True)
class Segment:
    name: str
    description: str


def segment_schema(tier_names: tuple[str, ...], band_names: tuple[str, ...]) -> Schema:
    card_tiers = tuple(tier.name.lower() for tier in CardTier)
    days = Param("days", Type.INT, minimum=1)
    return Schema(
        fields=(
            FieldSpec(
                "age", Type.INT, "age in whole years on as_of (unknown without a birth date)"
            ),
            FieldSpec("tier", Type.STRING, "the bank-wide tier", tier_names),
            FieldSpec("value_band", Type.STRING, "the value band", band_names),
            FieldSpec("total_assets_cny", Type.DECIMAL, "total assets today, CNY"),
            FieldSpec("total_liabilities_cny", Type.DECIMAL, "total liabilities today, CNY"),
            FieldSpec("average_assets_cny", Type.DECIMAL, "the tier's asset figure, CNY"),
            FieldSpec("annual_revenue_cny", Type.DECIMAL, "the value model's 12-month revenue"),
            FieldSpec(
                "days_since_last_contact",
                Type.INT,
                "days since the customer last transacted or got in touch (unknown: never)",
            ),
            FieldSpec("risk_level", Type.INT, "1–5 for C1–C5 while valid (unknown otherwise)"),
            FieldSpec(
                "risk_status",
                Type.STRING,
                "whether the risk assessment is valid on as_of",
                tuple(status.value for status in RiskStatus),
            ),
            FieldSpec("transactions_12m", Type.INT, "transactions in the last 12 months"),
        ),
        functions=(
            FunctionSpec(
                "balance",
                (Param("currency", Type.STRING, pattern="[A-Z]{3}"),),
                Type.DECIMAL,
                "the asset balances held in a currency, in that currency",
            ),
            FunctionSpec(
                "holds",
                (Param("product_line", Type.STRING, tuple(line.value for line in ProductLine)),),
                Type.BOOL,
                "has an open holding of a product line",
            ),
            FunctionSpec(
                "has_card",
                (Param("card_tier", Type.STRING, card_tiers),),
                Type.BOOL,
                "has an open card of this tier or better",
            ),
            FunctionSpec(
                "interactions",
                (days,),
                Type.INT,
                "branch visits, calls, app logins and ATM uses in the last N days",
            ),
            FunctionSpec(
                "interactions_of",
                (Param("kind", Type.STRING, tuple(kind.value for kind in InteractionKind)), days),
                Type.INT,
                "interactions of one kind in the last N days (message_sent: messages we sent)",
            ),
            FunctionSpec(
                "salary_months",
                (Param("months", Type.INT, minimum=1),),
                Type.INT,
                "how many of the last N months (this one included) had salary credits",
            ),
        ),
    )


def age_in_years(birth: dt.date | None, on: dt.date) -> int | None:
    """Whole years from `birth` to `on` (a 29 February birthday comes on 1 March in other
    years); None without a birth date, with one after `on`, or one more than MAX_AGE_YEARS ago
    (a broken date: identity takes any date of the last 150 years, and time goes on). The
    segment rules' `age` and the age ProfileChanged tells are this one figure."""
    if birth is None or birth > on:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return years if years <= MAX_AGE_YEARS else None


# The oldest age told (AgeChanged's contract: 0 to 150).
MAX_AGE_YEARS = 150


def segment_environment(
    facts: PartyFacts, totals: Totals, tier: TierResult, value: CustomerValue, risk: RiskView
) -> Environment:
    as_of = facts.as_of
    open_holdings = [holding for holding in facts.holdings if holding.is_open]
    recency = value.rfm.recency_days
    last_month = as_of.year * 12 + as_of.month - 1

    def balance(currency: str) -> Value:
        total = Decimal(0)
        for holding in open_holdings:
            if holding.balance.currency == currency and not holding.is_liability:
                major = to_major(holding.balance.minor_units, holding.balance.exponent)
                total = CONTEXT.add(total, major)
        return total

    def holds(product_line: str) -> Value:
        return any(holding.product_line.value == product_line for holding in open_holdings)

    def has_card(card_tier: str) -> Value:
        wanted = CardTier[card_tier.upper()]
        return any(h.card_tier is not None and h.card_tier >= wanted for h in open_holdings)

    def count(kinds: frozenset[InteractionKind], days: int) -> int:
        since = as_of - dt.timedelta(days=days)
        return sum(
            1 for i in facts.interactions if i.kind in kinds and since < i.at.date() <= as_of
        )

    def salary_months(months: int) -> Value:
        return sum(
            1
            for month in facts.activity
            if month.salary_credit_cny_minor > 0
            and last_month - months < month.month.year * 12 + month.month.month - 1 <= last_month
        )

    functions: dict[str, Callable[..., Value]] = {
        "balance": balance,
        "holds": holds,
        "has_card": has_card,
        "interactions": lambda days: count(CUSTOMER_INTERACTIONS, days),
        "interactions_of": lambda kind, days: count(frozenset({InteractionKind(kind)}), days),
        "salary_months": salary_months,
    }
    effective = risk.effective_level
    age = age_in_years(facts.birth_date, as_of)
    fields: dict[str, Value] = {
        "age": UNKNOWN if age is None else age,
        "tier": tier.name,
        "value_band": value.band,
        "total_assets_cny": to_major(totals.assets.minor_units, 2),
        "total_liabilities_cny": to_major(totals.liabilities.minor_units, 2),
        "average_assets_cny": to_major(tier.average_assets_cny_minor, 2),
        "annual_revenue_cny": to_major(value.annual_revenue_cny_minor, 2),
        "days_since_last_contact": UNKNOWN if recency is None else recency,
        "risk_level": UNKNOWN if effective is None else int(effective),
        "risk_status": risk.status.value,
        "transactions_12m": sum(month.transactions for month in last_twelve_months(facts)),
    }
    return Environment(fields, functions)


def assess_segments(rules: tuple[SegmentRule, ...], env: Environment) -> tuple[Segment, ...]:
    return tuple(
        Segment(rule.name, rule.description) for rule in rules if rule.condition.matches(env)
    )
