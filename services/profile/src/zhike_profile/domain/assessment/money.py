"""FX rates as data, and money arithmetic in integer minor units.

A rate is "CNY per one major unit of a currency, from a given day". The table keeps every dated
rate; the rate for a day is the newest one on or before it, so yesterday's assessment can be
recomputed exactly after today's rates arrive.

Arithmetic is `Decimal` in one explicit context (no float anywhere, no dependence on the thread's
decimal context), and every amount leaves as integer minor units rounded once, half to even.
"""

from __future__ import annotations

import bisect
import datetime as dt
import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from zhike_profile.domain.facts import Money

BASE_CURRENCY = "CNY"
BASE_EXPONENT = 2

# 50 significant digits hold any balance times any rate exactly; the traps turn a silent loss
# of precision into an error instead of a wrong amount.
CONTEXT = decimal.Context(
    prec=50,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


def to_major(minor_units: int, exponent: int) -> Decimal:
    """Minor units as an exact amount in major units (60000, 2 → 600.00)."""
    return CONTEXT.scaleb(Decimal(minor_units), -exponent)


def to_minor(amount: Decimal, exponent: int) -> int:
    """An amount in major units as minor units, rounded half to even (the one rounding step)."""
    scaled = CONTEXT.scaleb(amount, exponent)
    return int(scaled.quantize(Decimal(1), rounding=decimal.ROUND_HALF_EVEN, context=CONTEXT))


def cny(minor_units: int) -> Money:
    return Money(BASE_CURRENCY, minor_units, BASE_EXPONENT)


def format_amount(minor_units: int, exponent: int = BASE_EXPONENT) -> str:
    """An amount without its currency, as reasons quote thresholds: "500,000.00"."""
    sign = "-" if minor_units < 0 else ""
    major, minor = divmod(abs(minor_units), 10**exponent)
    if exponent == 0:
        return f"{sign}{major:,}"
    return f"{sign}{major:,}.{minor:0{exponent}d}"


def format_rate(rate: Decimal) -> str:
    """A fraction as a percentage with at least two decimals: 0.006 → "0.60%"."""
    percent = CONTEXT.multiply(rate, Decimal(100)).normalize(CONTEXT)
    exponent = percent.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:  # fewer than two decimals: pad to two
        percent = percent.quantize(Decimal("0.01"), context=CONTEXT)
    return f"{percent:f}%"


@dataclass(frozen=True)
class FxRate:
    currency: str
    valid_from: dt.date
    cny_per_unit: Decimal  # CNY per one major unit of `currency`

    def __str__(self) -> str:
        return f"{self.currency} 1 = CNY {self.cny_per_unit:f} from {self.valid_from.isoformat()}"


class FxRateMissing(LookupError):
    """No rate for a currency on or before a day."""

    def __init__(self, currency: str, day: dt.date) -> None:
        super().__init__(f"no FX rate for {currency} on or before {day.isoformat()}")
        self.currency = currency
        self.day = day


_BASE_RATE = FxRate(BASE_CURRENCY, dt.date.min, Decimal(1))


class FxRates:
    """The rate table: immutable once built; `convert` and `to_cny` look rates up by day."""

    __slots__ = ("_days", "_exponents", "_rates")

    def __init__(self, rates: Iterable[FxRate], exponents: Mapping[str, int]) -> None:
        by_currency: dict[str, list[FxRate]] = {}
        for rate in rates:
            if rate.currency == BASE_CURRENCY:
                raise ValueError(f"{BASE_CURRENCY} is the base currency: it has no rate")
            if rate.cny_per_unit <= 0:
                raise ValueError(f"{rate.currency} rate from {rate.valid_from}: must be positive")
            by_currency.setdefault(rate.currency, []).append(rate)
        self._rates: dict[str, tuple[FxRate, ...]] = {}
        self._days: dict[str, tuple[dt.date, ...]] = {}
        for currency, listed in by_currency.items():
            listed.sort(key=lambda rate: rate.valid_from)
            days = tuple(rate.valid_from for rate in listed)
            if len(set(days)) != len(days):
                raise ValueError(f"{currency}: two rates from the same day")
            self._rates[currency] = tuple(listed)
            self._days[currency] = days
        self._exponents = {BASE_CURRENCY: BASE_EXPONENT, **exponents}

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted(self._rates))

    def all_rates(self) -> tuple[FxRate, ...]:
        return tuple(rate for currency in self.currencies for rate in self._rates[currency])

    def exponent(self, currency: str) -> int:
        """Minor units per major unit (10 ** exponent) of a currency the table knows; 2 if not."""
        return self._exponents.get(currency, 2)

    def rate_on(self, currency: str, day: dt.date) -> FxRate:
        if currency == BASE_CURRENCY:
            return _BASE_RATE
        days = self._days.get(currency)
        if days is None:
            raise FxRateMissing(currency, day)
        index = bisect.bisect_right(days, day) - 1
        if index < 0:
            raise FxRateMissing(currency, day)
        return self._rates[currency][index]

    def to_cny(self, money: Money, day: dt.date) -> Decimal:
        """The exact CNY amount (major units, unrounded): sum these, then round once."""
        rate = self.rate_on(money.currency, day)
        return CONTEXT.multiply(to_major(money.minor_units, money.exponent), rate.cny_per_unit)

    def convert(self, money: Money, currency: str, day: dt.date) -> Money:
        """`money` in `currency` at the day's rates, through CNY, rounded once at the end."""
        in_cny = self.to_cny(money, day)
        rate = self.rate_on(currency, day)
        exponent = self.exponent(currency)
        return Money(
            currency, to_minor(CONTEXT.divide(in_cny, rate.cny_per_unit), exponent), exponent
        )
