"""The customer value model: what the relationship earns the bank in a year, and how engaged the
customer is. docs/profile-value-model.md describes it with its formulae and a worked example;
every figure it produces comes with the words that explain it.

Revenue, per product line, for the next 12 months at today's balances:
  balances  × the line's annual rate (deposit spread, investment fee, loan margin)
  cards     annual fee per open card (by card tier) + card spend × interchange rate, the spend
            of the observed months scaled to 12
RFM: recency (days since the last contact), frequency (transactions and customer-initiated
contacts in 12 months), monetary (money in and out in 12 months), each scored 1–5 by cut-offs.
The value band is the highest whose minimum the total revenue reaches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from zhike_profile.domain.assessment.money import (
    CONTEXT,
    FxRateMissing,
    FxRates,
    cny,
    format_rate,
    to_major,
    to_minor,
)
from zhike_profile.domain.facts import (
    CardTier,
    InteractionKind,
    MonthlyActivity,
    PartyFacts,
    ProductLine,
    SourceKey,
)

YEAR_DAYS = 365
CUSTOMER_INTERACTIONS = frozenset(InteractionKind) - {InteractionKind.MESSAGE_SENT}
_LINE_WORDS = {line: line.value.replace("_", " ") for line in ProductLine}


@dataclass(frozen=True)
class CardPricing:
    interchange_rate: Decimal  # fraction of card spend the bank earns
    annual_fee_cny_minor: tuple[tuple[CardTier, int], ...]  # per card, by card tier

    def annual_fee(self, tier: CardTier | None) -> int:
        wanted = tier or CardTier.STANDARD
        return next((fee for card, fee in self.annual_fee_cny_minor if card == wanted), 0)


@dataclass(frozen=True)
class ValueBand:
    name: str  # "high"
    label: str  # "High"
    min_annual_revenue_cny_minor: int


@dataclass(frozen=True)
class RfmCutoffs:
    """Four ascending cut-offs each: a figure past k of them scores k + 1 (recency: within)."""

    recency_days: tuple[int, int, int, int]  # within 1st → 5 … beyond the 4th, or never → 1
    frequency: tuple[int, int, int, int]  # at least 4th → 5 … below the 1st → 1
    monetary_cny_minor: tuple[int, int, int, int]


@dataclass(frozen=True)
class ValueModel:
    balance_rates: tuple[tuple[ProductLine, Decimal], ...]  # annual, as a fraction of balance
    credit_card: CardPricing
    debit_card: CardPricing
    bands: tuple[ValueBand, ...]  # lowest first; the first one's minimum is 0
    rfm: RfmCutoffs
    drivers_shown: int = 3

    def balance_rate(self, line: ProductLine) -> Decimal:
        return next((rate for known, rate in self.balance_rates if known == line), Decimal(0))


@dataclass(frozen=True)
class Contribution:
    product_line: ProductLine
    annual_revenue_cny_minor: int
    explanation: str  # "time deposit: CNY 1,000,000.00 × 0.60% = CNY 6,000.00"


@dataclass(frozen=True)
class Rfm:
    recency_days: int | None  # None: no contact on record
    frequency: int
    monetary_cny_minor: int
    recency_score: int  # 1–5, 5 best
    frequency_score: int
    monetary_score: int

    @property
    def code(self) -> str:
        """The usual compact form, e.g. "543"."""
        return f"{self.recency_score}{self.frequency_score}{self.monetary_score}"


@dataclass(frozen=True)
class CustomerValue:
    annual_revenue_cny_minor: int
    contributions: tuple[Contribution, ...]  # by product line, largest first
    band: str
    band_label: str
    drivers: tuple[str, ...]  # the top contributions, in words
    rfm: Rfm


def _month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def last_twelve_months(facts: PartyFacts) -> tuple[MonthlyActivity, ...]:
    last = _month_index(facts.as_of)
    return tuple(m for m in facts.activity if last - 12 < _month_index(m.month) <= last)


def _observed_months(facts: PartyFacts, window: tuple[MonthlyActivity, ...]) -> int:
    """Months from the first observed one to as_of's, inclusive: a gap inside counts as a month
    without spend, so only a short history is scaled up."""
    if not window:
        return 0
    first = min(_month_index(month.month) for month in window)
    return _month_index(facts.as_of) - first + 1


def assess_value(facts: PartyFacts, model: ValueModel, rates: FxRates) -> CustomerValue:
    contributions = _contributions(facts, model, rates)
    revenue = sum(c.annual_revenue_cny_minor for c in contributions)
    band = model.bands[0]
    for candidate in model.bands:
        if revenue >= candidate.min_annual_revenue_cny_minor:
            band = candidate
    drivers = tuple(
        c.explanation
        for c in contributions[: model.drivers_shown]
        if c.annual_revenue_cny_minor > 0
    )
    return CustomerValue(
        annual_revenue_cny_minor=revenue,
        contributions=contributions,
        band=band.name,
        band_label=band.label,
        drivers=drivers,
        rfm=assess_rfm(facts, model.rfm),
    )


def _contributions(
    facts: PartyFacts, model: ValueModel, rates: FxRates
) -> tuple[Contribution, ...]:
    # Balances per product line, exact in CNY at today's rates (a currency without a rate
    # cannot be valued and is left out, as in the totals).
    balances: dict[ProductLine, Decimal] = {}
    # Per line, each card once by its account: a card with balances in two currencies is two
    # holdings but one card, charged one fee.
    cards: dict[ProductLine, dict[tuple[SourceKey, str], CardTier | None]] = {}
    for holding in facts.holdings:
        if not holding.is_open:
            continue
        if holding.product_line in (ProductLine.CREDIT_CARD, ProductLine.DEBIT_CARD):
            held_cards = cards.setdefault(holding.product_line, {})
            held_cards[(holding.source, holding.account_id)] = holding.card_tier
        try:
            amount = rates.to_cny(holding.balance, facts.as_of)
        except FxRateMissing:
            continue
        line = holding.product_line
        balances[line] = CONTEXT.add(balances.get(line, Decimal(0)), amount)

    window = last_twelve_months(facts)
    observed = _observed_months(facts, window)
    spend = {
        ProductLine.CREDIT_CARD: sum(m.credit_card_spend_cny_minor for m in window),
        ProductLine.DEBIT_CARD: sum(m.debit_card_spend_cny_minor for m in window),
    }

    contributions: list[Contribution] = []
    for line in ProductLine:
        words = _LINE_WORDS[line]
        parts: list[str] = []
        revenue = Decimal(0)
        rate = model.balance_rate(line)
        balance = balances.get(line, Decimal(0))
        if rate and balance:
            earned = CONTEXT.multiply(balance, rate)
            revenue = CONTEXT.add(revenue, earned)
            parts.append(f"{cny(to_minor(balance, 2))} × {format_rate(rate)}")
        if line in cards:
            pricing = model.credit_card if line is ProductLine.CREDIT_CARD else model.debit_card
            held = list(cards[line].values())
            fees = sum(pricing.annual_fee(tier) for tier in held)
            if fees:
                revenue = CONTEXT.add(revenue, to_major(fees, 2))
                parts.append(f"annual fees {cny(fees)} ({len(held)} card{'s' * (len(held) > 1)})")
            if spend[line] and pricing.interchange_rate:
                annual_spend = to_minor(CONTEXT.divide(spend[line] * 12, observed), 0)
                earned = CONTEXT.multiply(to_major(annual_spend, 2), pricing.interchange_rate)
                revenue = CONTEXT.add(revenue, earned)
                scaled = "" if observed == 12 else f", {observed} month(s) scaled to 12"
                parts.append(
                    f"spend {cny(annual_spend)} a year{scaled} × "
                    f"{format_rate(pricing.interchange_rate)}"
                )
        total = to_minor(revenue, 2)
        if total:
            explanation = f"{words}: {' + '.join(parts)} = {cny(total)} a year"
            contributions.append(Contribution(line, total, explanation))
    contributions.sort(key=lambda c: (-c.annual_revenue_cny_minor, c.product_line.value))
    return tuple(contributions)


def assess_rfm(facts: PartyFacts, cutoffs: RfmCutoffs) -> Rfm:
    recency = days_since_last_contact(facts)
    window = last_twelve_months(facts)
    year_ago = facts.as_of - dt.timedelta(days=YEAR_DAYS)
    contacts = sum(
        1
        for interaction in facts.interactions
        if interaction.kind in CUSTOMER_INTERACTIONS
        and year_ago < interaction.at.date() <= facts.as_of
    )
    frequency = sum(month.transactions for month in window) + contacts
    monetary = sum(month.debit_cny_minor + month.credit_cny_minor for month in window)
    if recency is None:
        recency_score = 1
    else:
        recency_score = 5 - sum(1 for cut in cutoffs.recency_days if recency > cut)
    return Rfm(
        recency_days=recency,
        frequency=frequency,
        monetary_cny_minor=monetary,
        recency_score=recency_score,
        frequency_score=1 + sum(1 for cut in cutoffs.frequency if frequency >= cut),
        monetary_score=1 + sum(1 for cut in cutoffs.monetary_cny_minor if monetary >= cut),
    )


def days_since_last_contact(facts: PartyFacts) -> int | None:
    """Days since the customer last did something: a customer-initiated interaction, or a
    month with transactions (kept per month, so it counts as its last day, or today for the
    current month). None when there is nothing on record up to as_of."""
    days: list[int] = [
        (facts.as_of - interaction.at.date()).days
        for interaction in facts.interactions
        if interaction.kind in CUSTOMER_INTERACTIONS and interaction.at.date() <= facts.as_of
    ]
    latest = max(
        (m.month for m in facts.activity if m.transactions > 0 and m.month <= facts.as_of),
        default=None,
    )
    if latest is not None:
        days.append((facts.as_of - min(_month_end(latest), facts.as_of)).days)
    return min(days, default=None)


def _month_end(first: dt.date) -> dt.date:
    following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)
