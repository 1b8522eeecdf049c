"""The assessments' configuration, from plain documents (what YAML or JSON parse to).

Four documents, each its own file so each can be replaced on its own: `fx_rates`, `tiers`,
`value_model` and `segments` (the shipped defaults and their format are in
`zhike_profile/config/`). Reading files is not done here (the domain does no I/O):
`zhike_profile.config.load_assessment_config` reads them and calls `parse_config`.

Every problem names its document and where in it; all of them are reported at once, and a
segment rule's problem also names the rule and the line and column in its condition. Amounts
and rates are decimal strings or integers, never YAML floats: a float is already a rounded
binary number by the time it reaches us.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from zhike_profile.domain.assessment.expressions import (
    ExpressionError,
    compile_condition,
    position,
)
from zhike_profile.domain.assessment.money import BASE_CURRENCY, FxRate, FxRates
from zhike_profile.domain.assessment.segments import NAME_PATTERN, SegmentRule, segment_schema
from zhike_profile.domain.assessment.tier import Entitlement, Tier, TierPolicy
from zhike_profile.domain.assessment.value import CardPricing, RfmCutoffs, ValueBand, ValueModel
from zhike_profile.domain.facts import CardTier, ProductLine

DOCUMENTS = ("fx_rates", "tiers", "value_model", "segments")
T = TypeVar("T")


@dataclass(frozen=True)
class ConfigProblem:
    document: str  # "segments"
    where: str  # "rules[2].condition", "tiers[1].min_average_assets_cny"
    message: str
    rule: str | None = None  # segment rules: the rule's name, and where in its condition
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.rule is not None:
            return (
                f"{self.document}: rule {self.rule!r} ({self.where}) at "
                f"{self.line}:{self.column}: {self.message}"
            )
        return f"{self.document}: {self.where}: {self.message}"


class AssessmentConfigError(ValueError):
    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class AssessmentConfig:
    rates: FxRates
    tiers: TierPolicy
    value: ValueModel
    segments: tuple[SegmentRule, ...]


class _Invalid(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def parse_config(documents: Mapping[str, object]) -> AssessmentConfig:
    """Build the configuration from the four parsed documents; `AssessmentConfigError` lists
    every problem found."""
    problems: list[ConfigProblem] = []
    missing = [name for name in DOCUMENTS if name not in documents]
    if missing:
        raise AssessmentConfigError(
            [ConfigProblem(name, "(document)", "missing") for name in missing]
        )

    def attempt(document: str, parse: Callable[[object], T]) -> T | None:
        try:
            return parse(documents[document])
        except _Invalid as invalid:
            problems.append(ConfigProblem(document, invalid.where, invalid.message))
            return None

    rates = attempt("fx_rates", _rates)
    tiers = attempt("tiers", _tiers)
    value = attempt("value_model", _value_model)
    segments: tuple[SegmentRule, ...] = ()
    if tiers is not None and value is not None:
        # The rules are checked against the tier and band names, so they need both.
        segments = _segments(documents["segments"], tiers, value, problems)
    if problems or rates is None or tiers is None or value is None:
        raise AssessmentConfigError(problems)
    return AssessmentConfig(rates, tiers, value, segments)


# -- values ----------------------------------------------------------------------------------


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(where, "must be a mapping")
    return value


def _list(value: object, where: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise _Invalid(where, "must be a list")
    return value


def _get(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise _Invalid(f"{where}.{key}" if where else key, "missing")
    return mapping[key]


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(where, "must be a non-empty string")
    return value


def _name(value: object, where: str) -> str:
    text = _text(value, where)
    if not re.fullmatch(NAME_PATTERN, text):
        raise _Invalid(where, f"{text!r}: lower case letters, digits and '_', a letter first")
    return text


def _int(value: object, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Invalid(where, f"must be an integer ≥ {minimum}")
    return value


def _decimal(value: object, where: str) -> Decimal:
    if isinstance(value, float):
        raise _Invalid(where, f'write {value!r} as a string ("{value}"): YAML floats are inexact')
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(where, 'must be a decimal string such as "7.1234"')
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(where, f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise _Invalid(where, f"{value!r} is not a finite number")
    return number


def _fraction(value: object, where: str) -> Decimal:
    number = _decimal(value, where)
    if not -1 <= number <= 1:
        raise _Invalid(where, 'a rate is a fraction: "0.0150" is 1.50%')
    return number


def _cny_minor(value: object, where: str) -> int:
    """A non-negative CNY amount in major units, at most 2 decimals → minor units."""
    number = _decimal(value, where)
    if number < 0:
        raise _Invalid(where, "must not be negative")
    minor = number.scaleb(2)
    if minor != minor.to_integral_value():
        raise _Invalid(where, "CNY has two decimals at most")
    return int(minor)


def _date(value: object, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise _Invalid(where, "must be a date, not a date and time")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _Invalid(where, "must be a date, YYYY-MM-DD")


def _ascending(values: list[int], where: str) -> tuple[int, int, int, int]:
    if len(values) != 4 or any(b <= a for a, b in itertools.pairwise(values)):
        raise _Invalid(where, "must be four ascending cut-offs")
    return (values[0], values[1], values[2], values[3])


# -- documents -------------------------------------------------------------------------------


def _rates(document: object) -> FxRates:
    currencies = _mapping(_get(_mapping(document, "(document)"), "currencies", ""), "currencies")
    rates: list[FxRate] = []
    exponents: dict[str, int] = {}
    for currency, entry in currencies.items():
        where = f"currencies.{currency}"
        if not isinstance(currency, str) or not re.fullmatch("[A-Z]{3}", currency):
            raise _Invalid(where, "an ISO 4217 code such as USD")
        if currency == BASE_CURRENCY:
            raise _Invalid(where, f"{BASE_CURRENCY} is the base currency: it has no rate")
        entry = _mapping(entry, where)
        exponents[currency] = _int(entry.get("exponent", 2), f"{where}.exponent")
        listed = _list(_get(entry, "rates", where), f"{where}.rates")
        if not listed:
            raise _Invalid(f"{where}.rates", "needs at least one rate")
        seen: set[dt.date] = set()
        for index, item in enumerate(listed):
            at = f"{where}.rates[{index}]"
            item = _mapping(item, at)
            valid_from = _date(_get(item, "from", at), f"{at}.from")
            if valid_from in seen:
                raise _Invalid(f"{at}.from", f"a second rate from {valid_from.isoformat()}")
            seen.add(valid_from)
            rate = _decimal(_get(item, "cny_per_unit", at), f"{at}.cny_per_unit")
            if rate <= 0:
                raise _Invalid(f"{at}.cny_per_unit", "must be positive")
            rates.append(FxRate(currency, valid_from, rate))
    return FxRates(rates, exponents)


def _tiers(document: object) -> TierPolicy:
    root = _mapping(document, "(document)")
    catalogue = _mapping(_get(root, "entitlements", ""), "entitlements")
    entitlements = {
        _name(code, f"entitlements.{code}"): Entitlement(code, _text(text, f"entitlements.{code}"))
        for code, text in catalogue.items()
    }
    listed = _list(_get(root, "tiers", ""), "tiers")
    if not listed:
        raise _Invalid("tiers", "needs at least one tier")
    tiers: list[Tier] = []
    for rank, item in enumerate(listed):
        at = f"tiers[{rank}]"
        item = _mapping(item, at)
        name = _name(_get(item, "name", at), f"{at}.name")
        minimum = _cny_minor(
            _get(item, "min_average_assets_cny", at), f"{at}.min_average_assets_cny"
        )
        if rank == 0 and minimum != 0:
            raise _Invalid(f"{at}.min_average_assets_cny", "the lowest tier starts at 0")
        if tiers and minimum <= tiers[-1].min_average_assets_cny_minor:
            raise _Invalid(f"{at}.min_average_assets_cny", "must be above the tier before it")
        if any(tier.name == name for tier in tiers):
            raise _Invalid(f"{at}.name", f"{name!r} twice")
        codes = _list(item.get("entitlements", []), f"{at}.entitlements")
        for code in codes:
            if code not in entitlements:
                raise _Invalid(f"{at}.entitlements", f"{code!r} is not in the entitlements list")
        tiers.append(
            Tier(
                name=name,
                label=_text(item.get("label", name.replace("_", " ").title()), f"{at}.label"),
                rank=rank,
                min_average_assets_cny_minor=minimum,
                entitlements=tuple(entitlements[code] for code in codes),
            )
        )
    names = {tier.name for tier in tiers}
    floors: list[tuple[CardTier, str]] = []
    for card, tier_name in _mapping(root.get("card_floors", {}), "card_floors").items():
        at = f"card_floors.{card}"
        if not isinstance(card, str) or card.upper() not in CardTier.__members__:
            raise _Invalid(at, f"card tiers are {', '.join(t.name.lower() for t in CardTier)}")
        if tier_name not in names:
            raise _Invalid(at, f"{tier_name!r} is not a tier")
        floors.append((CardTier[card.upper()], tier_name))
    return TierPolicy(
        tiers=tuple(tiers),
        basis_months=_int(_get(root, "basis_months", ""), "basis_months", minimum=1),
        card_floors=tuple(floors),
    )


def _card_pricing(document: object, where: str) -> CardPricing:
    entry = _mapping(document, where)
    fees = _mapping(entry.get("annual_fee_cny", {}), f"{where}.annual_fee_cny")
    priced: list[tuple[CardTier, int]] = []
    for card, fee in fees.items():
        at = f"{where}.annual_fee_cny.{card}"
        if not isinstance(card, str) or card.upper() not in CardTier.__members__:
            raise _Invalid(at, f"card tiers are {', '.join(t.name.lower() for t in CardTier)}")
        priced.append((CardTier[card.upper()], _cny_minor(fee, at)))
    return CardPricing(
        interchange_rate=_fraction(
            _get(entry, "interchange_rate", where), f"{where}.interchange_rate"
        ),
        annual_fee_cny_minor=tuple(priced),
    )


def _value_model(document: object) -> ValueModel:
    root = _mapping(document, "(document)")
    balance_rates: list[tuple[ProductLine, Decimal]] = []
    for line, rate in _mapping(_get(root, "balance_rates", ""), "balance_rates").items():
        at = f"balance_rates.{line}"
        if line not in {known.value for known in ProductLine}:
            raise _Invalid(
                at, f"product lines are {', '.join(known.value for known in ProductLine)}"
            )
        balance_rates.append((ProductLine(line), _fraction(rate, at)))
    cards = _mapping(_get(root, "cards", ""), "cards")
    bands: list[ValueBand] = []
    for index, item in enumerate(_list(_get(root, "bands", ""), "bands")):
        at = f"bands[{index}]"
        item = _mapping(item, at)
        name = _name(_get(item, "name", at), f"{at}.name")
        minimum = _cny_minor(
            _get(item, "min_annual_revenue_cny", at), f"{at}.min_annual_revenue_cny"
        )
        if index == 0 and minimum != 0:
            raise _Invalid(f"{at}.min_annual_revenue_cny", "the lowest band starts at 0")
        if bands and minimum <= bands[-1].min_annual_revenue_cny_minor:
            raise _Invalid(f"{at}.min_annual_revenue_cny", "must be above the band before it")
        if any(band.name == name for band in bands):
            raise _Invalid(f"{at}.name", f"{name!r} twice")
        label = _text(item.get("label", name.replace("_", " ").title()), f"{at}.label")
        bands.append(ValueBand(name, label, minimum))
    if not bands:
        raise _Invalid("bands", "needs at least one band")
    rfm = _mapping(_get(root, "rfm", ""), "rfm")
    recency = _list(_get(rfm, "recency_days", "rfm"), "rfm.recency_days")
    frequency = _list(_get(rfm, "frequency", "rfm"), "rfm.frequency")
    monetary = _list(_get(rfm, "monetary_cny", "rfm"), "rfm.monetary_cny")
    return ValueModel(
        balance_rates=tuple(balance_rates),
        credit_card=_card_pricing(_get(cards, "credit_card", "cards"), "cards.credit_card"),
        debit_card=_card_pricing(_get(cards, "debit_card", "cards"), "cards.debit_card"),
        bands=tuple(bands),
        rfm=RfmCutoffs(
            recency_days=_ascending(
                [_int(v, "rfm.recency_days") for v in recency], "rfm.recency_days"
            ),
            frequency=_ascending([_int(v, "rfm.frequency") for v in frequency], "rfm.frequency"),
            monetary_cny_minor=_ascending(
                [_cny_minor(v, "rfm.monetary_cny") for v in monetary], "rfm.monetary_cny"
            ),
        ),
        drivers_shown=_int(root.get("drivers_shown", 3), "drivers_shown", minimum=1),
    )


def _segments(
    document: object, tiers: TierPolicy, value: ValueModel, problems: list[ConfigProblem]
) -> tuple[SegmentRule, ...]:
    schema = segment_schema(
        tuple(tier.name for tier in tiers.tiers), tuple(band.name for band in value.bands)
    )
    try:
        listed = _list(_get(_mapping(document, "(document)"), "rules", ""), "rules")
    except _Invalid as invalid:
        problems.append(ConfigProblem("segments", invalid.where, invalid.message))
        return ()
    rules: list[SegmentRule] = []
    names: set[str] = set()
    for index, item in enumerate(listed):
        at = f"rules[{index}]"
        try:
            entry = _mapping(item, at)
            name = _name(_get(entry, "name", at), f"{at}.name")
            if name in names:
                raise _Invalid(f"{at}.name", f"{name!r} twice")
            names.add(name)
            description = _text(_get(entry, "description", at), f"{at}.description")
            text = _text(_get(entry, "condition", at), f"{at}.condition")
        except _Invalid as invalid:
            problems.append(ConfigProblem("segments", invalid.where, invalid.message))
            continue
        try:
            condition = compile_condition(text, schema)
        except ExpressionError as error:
            line, column = position(text, error.offset)
            problems.append(
                ConfigProblem("segments", f"{at}.condition", error.message, name, line, column)
            )
            continue
        rules.append(SegmentRule(name, description, condition))
    return tuple(rules)
