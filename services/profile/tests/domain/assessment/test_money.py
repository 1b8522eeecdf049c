"""FX rates as dated data, and conversions in integer minor units rounded half to even."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_profile.domain.assessment import AssessmentConfig, FxRate, FxRateMissing, FxRates
from zhike_profile.domain.assessment.money import format_rate, to_minor
from zhike_profile.domain.facts import Money

JAN = dt.date(2026, 1, 2)
JUL = dt.date(2026, 7, 1)


def test_the_rate_for_a_day_is_the_newest_on_or_before_it(config: AssessmentConfig) -> None:
    rates = config.rates
    assert rates.rate_on("USD", JAN).cny_per_unit == Decimal("7.0000")
    assert rates.rate_on("USD", JUL - dt.timedelta(days=1)).cny_per_unit == Decimal("7.0000")
    assert rates.rate_on("USD", JUL).cny_per_unit == Decimal("7.1043")
    assert rates.rate_on("USD", dt.date(2030, 1, 1)).valid_from == JUL


def test_a_day_before_the_first_rate_has_no_rate(config: AssessmentConfig) -> None:
    with pytest.raises(FxRateMissing) as missing:
        config.rates.rate_on("USD", JAN - dt.timedelta(days=1))
    assert missing.value.currency == "USD"
    assert "USD" in str(missing.value)


def test_an_unknown_currency_has_no_rate(config: AssessmentConfig) -> None:
    with pytest.raises(FxRateMissing):
        config.rates.convert(Money("XAU", 100), "CNY", JUL)


def test_cny_converts_to_itself_at_one(config: AssessmentConfig) -> None:
    assert config.rates.convert(Money("CNY", 12_345), "CNY", dt.date(1990, 1, 1)) == Money(
        "CNY", 12_345
    )


def test_usd_6000_is_cny_42625_80_at_7_1043(config: AssessmentConfig) -> None:
    assert config.rates.convert(Money("USD", 600_000), "CNY", JUL) == Money("CNY", 4_262_580)


def test_rounding_is_half_to_even() -> None:
    # 0.05 USD minor units × 7.5 = x.5 CNY minor units: ties go to the even neighbour.
    rates = FxRates([FxRate("USD", JAN, Decimal("7.5"))], {"USD": 2})
    assert rates.convert(Money("USD", 1), "CNY", JAN) == Money("CNY", 8)  # 7.5 → 8
    assert rates.convert(Money("USD", 3), "CNY", JAN) == Money("CNY", 22)  # 22.5 → 22
    assert rates.convert(Money("USD", 5), "CNY", JAN) == Money("CNY", 38)  # 37.5 → 38
    assert to_minor(Decimal("-0.125"), 2) == -12


def test_the_target_currency_exponent_comes_from_the_table(config: AssessmentConfig) -> None:
    # JPY has no minor unit: CNY 100.00 at 0.04512 CNY per yen is JPY 2,216.
    converted = config.rates.convert(Money("CNY", 10_000), "JPY", JUL)
    assert converted == Money("JPY", 2_216, 0)
    assert str(converted) == "JPY 2,216"


def test_rates_format_as_percentages() -> None:
    assert format_rate(Decimal("0.006")) == "0.60%"
    assert format_rate(Decimal("0.0045")) == "0.45%"
    assert format_rate(Decimal("0.00125")) == "0.125%"


def test_a_table_refuses_two_rates_from_one_day_and_non_positive_rates() -> None:
    with pytest.raises(ValueError, match="same day"):
        FxRates([FxRate("USD", JAN, Decimal(7)), FxRate("USD", JAN, Decimal(8))], {})
    with pytest.raises(ValueError, match="positive"):
        FxRates([FxRate("USD", JAN, Decimal(0))], {})


rates_at_least_one_cny = st.decimals(
    min_value=Decimal("1.0000"), max_value=Decimal("20.0000"), places=4
)
amounts = st.integers(min_value=-(10**15), max_value=10**15)


@given(rate=rates_at_least_one_cny, minor=amounts)
def test_converting_to_cny_and_back_is_within_one_minor_unit(rate: Decimal, minor: int) -> None:
    rates = FxRates([FxRate("USD", JAN, rate)], {"USD": 2})
    there = rates.convert(Money("USD", minor), "CNY", JAN)
    back = rates.convert(there, "USD", JAN)
    assert abs(back.minor_units - minor) <= 1


@given(
    rate=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("20"), places=4),
    minor=amounts,
)
def test_converting_through_cny_loses_at_most_half_a_cny_minor_unit_each_way(
    rate: Decimal, minor: int
) -> None:
    # For a currency worth less than a CNY (HKD, JPY) the CNY leg's rounding is worth more
    # than one of its minor units; the bound is then that rounding, carried back, plus one.
    rates = FxRates([FxRate("HKD", JAN, rate)], {"HKD": 2})
    back = rates.convert(rates.convert(Money("HKD", minor), "CNY", JAN), "HKD", JAN)
    assert abs(back.minor_units - minor) <= Decimal("0.5") / rate + Decimal("0.5")


@given(minor=amounts, rate=rates_at_least_one_cny)
def test_conversion_is_exact_integer_minor_units(minor: int, rate: Decimal) -> None:
    rates = FxRates([FxRate("USD", JAN, rate)], {"USD": 2})
    converted = rates.convert(Money("USD", minor), "CNY", JAN)
    assert isinstance(converted.minor_units, int)
    assert abs(Decimal(converted.minor_units) - Decimal(minor) * rate) <= Decimal("0.5")
