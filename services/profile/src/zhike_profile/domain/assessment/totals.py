"""Total assets and liabilities in CNY, from every open holding at the day's rates.

Each open holding is on one side by its sign: an asset account's positive balance is an asset and
its negative balance (an overdraft) a liability; a loan's or credit card's positive balance is a
liability and its negative one (an overpayment) an asset. Balances are summed exactly per
currency, converted exactly, and rounded once per total, so the order of holdings (or which
branch opened them) cannot change a figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from zhike_profile.domain.assessment.money import (
    BASE_EXPONENT,
    CONTEXT,
    FxRate,
    FxRateMissing,
    FxRates,
    cny,
    to_minor,
)
from zhike_profile.domain.facts import Money, PartyFacts


@dataclass(frozen=True)
class Totals:
    assets: Money  # CNY
    liabilities: Money  # CNY, positive
    assets_by_currency: tuple[Money, ...]  # in each currency, sorted by currency
    liabilities_by_currency: tuple[Money, ...]
    rates_used: tuple[FxRate, ...]  # the dated rate behind each converted currency
    unpriced_currencies: tuple[str, ...] = ()  # held, but no rate on or before as_of: left out

    @property
    def net_worth(self) -> Money:
        return cny(self.assets.minor_units - self.liabilities.minor_units)


def assess_totals(facts: PartyFacts, rates: FxRates) -> Totals:
    assets: dict[tuple[str, int], int] = {}
    liabilities: dict[tuple[str, int], int] = {}
    for holding in facts.holdings:
        if not holding.is_open or holding.balance.minor_units == 0:
            continue
        key = (holding.balance.currency, holding.balance.exponent)
        owed = holding.is_liability == (holding.balance.minor_units > 0)
        side = liabilities if owed else assets
        side[key] = side.get(key, 0) + abs(holding.balance.minor_units)

    used: dict[str, FxRate] = {}
    unpriced: set[str] = set()

    def in_cny(side: dict[tuple[str, int], int]) -> int:
        total = Decimal(0)
        for (currency, exponent), minor in side.items():
            try:
                used[currency] = rates.rate_on(currency, facts.as_of)
                amount = rates.to_cny(Money(currency, minor, exponent), facts.as_of)
            except FxRateMissing:
                unpriced.add(currency)
                continue
            total = CONTEXT.add(total, amount)
        return to_minor(total, BASE_EXPONENT)

    def listed(side: dict[tuple[str, int], int]) -> tuple[Money, ...]:
        return tuple(Money(cur, minor, exp) for (cur, exp), minor in sorted(side.items()))

    return Totals(
        assets=cny(in_cny(assets)),
        liabilities=cny(in_cny(liabilities)),
        assets_by_currency=listed(assets),
        liabilities_by_currency=listed(liabilities),
        rates_used=tuple(rate for currency, rate in sorted(used.items()) if currency != "CNY"),
        unpriced_currencies=tuple(sorted(unpriced)),
    )
