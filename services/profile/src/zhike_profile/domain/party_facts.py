"""A party's PartyFacts, assembled from the stored facts of the source records linked to it.

Storage keeps facts per source record (each its latest version); this module merges them into
the party's view, deterministically, so the same stored facts give the same PartyFacts whatever
order they were written in:

- holdings: every account whose opening fact is known, one per account and currency;
- activity: per month, transactions summed over records and currencies (converted to CNY at the
  month's rates), and the average daily total assets, from every balance fact;
- consents: per channel and purpose, the latest decision wherever it was captured (a tie goes to
  the withdrawal: the customer is contacted only on a clear yes);
- preferences and risk: those of the record that changed them last.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from zhike_profile.domain.assessment.money import (
    BASE_EXPONENT,
    CONTEXT,
    FxRateMissing,
    FxRates,
    to_minor,
)
from zhike_profile.domain.facts import (
    CardTier,
    Consent,
    Holding,
    Interaction,
    Money,
    MonthlyActivity,
    PartyFacts,
    Preferences,
    ProductLine,
    ProductRisk,
    RiskAssessment,
    SourceKey,
)

# Months of activity a profile looks back over (the current one included).
ACTIVITY_MONTHS = 12
LIABILITY_LINES = frozenset(
    {ProductLine.CREDIT_CARD, ProductLine.MORTGAGE, ProductLine.PERSONAL_LOAN}
)


@dataclass(frozen=True)
class StoredAccount:
    source: SourceKey
    account_id: str
    product_line: ProductLine | None  # None until an opening fact arrives
    product_code: str
    currency: str
    branch_code: str
    opened_on: dt.date | None
    closed_on: dt.date | None
    card_tier: CardTier | None
    risk: ProductRisk | None
    overdue_days: int


@dataclass(frozen=True)
class StoredBalance:
    source: SourceKey
    account_id: str
    currency: str
    balance_minor: int
    seq: int
    at: dt.datetime


@dataclass(frozen=True)
class StoredActivity:
    source: SourceKey
    account_id: str
    month: dt.date  # first day
    currency: str
    transactions: int
    debit_minor: int
    credit_minor: int
    salary_minor: int = 0  # of the credits
    card_purchase_minor: int = 0  # of the debits: purchases with the account's card


@dataclass(frozen=True)
class StoredConsent:
    source: SourceKey
    consent: Consent
    seq: int


@dataclass(frozen=True)
class StoredPreferences:
    source: SourceKey
    preferences: Preferences
    seq: int
    at: dt.datetime


@dataclass(frozen=True)
class StoredRisk:
    source: SourceKey
    assessment: RiskAssessment
    seq: int


@dataclass(frozen=True)
class StoredFacts:
    """The stored facts of a party's records (what storage reads for one party)."""

    accounts: tuple[StoredAccount, ...] = ()
    balances: tuple[StoredBalance, ...] = ()  # the latest balance per account and currency
    # Balance facts from the start of the activity window, plus the last one before it of each
    # account and currency (the balance the window starts with).
    history: tuple[StoredBalance, ...] = ()
    activity: tuple[StoredActivity, ...] = ()
    interactions: tuple[Interaction, ...] = ()
    consents: tuple[StoredConsent, ...] = ()
    preferences: tuple[StoredPreferences, ...] = ()
    risks: tuple[StoredRisk, ...] = ()
    records: tuple[SourceKey, ...] = field(default=())


def first_of_month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def window_start(as_of: dt.date) -> dt.date:
    """The first day of the activity window that ends with as_of's month."""
    return add_months(first_of_month(as_of), -(ACTIVITY_MONTHS - 1))


def is_liability(line: ProductLine) -> bool:
    return line in LIABILITY_LINES


def asset_part(line: ProductLine, balance_minor: int) -> int:
    """What a balance adds to total assets: an asset account's positive balance, a loan's or
    card's overpayment (as assessment/totals.py splits them)."""
    if is_liability(line):
        return max(-balance_minor, 0)
    return max(balance_minor, 0)


def party_facts(
    party_id: str,
    as_of: dt.date,
    stored: StoredFacts,
    rates: FxRates,
    zone: ZoneInfo,
) -> PartyFacts:
    lines = {
        (a.source, a.account_id): a.product_line
        for a in stored.accounts
        if a.product_line is not None
    }
    return PartyFacts(
        party_id=party_id,
        as_of=as_of,
        holdings=_holdings(stored, rates),
        activity=_activity(stored, lines, as_of, rates, zone),
        interactions=tuple(sorted(stored.interactions, key=_interaction_order)),
        consents=_consents(stored.consents),
        preferences=_preferences(stored.preferences),
        risk=_risk(stored.risks),
    )


def _interaction_order(interaction: Interaction) -> tuple[dt.datetime, SourceKey, str, str]:
    return (interaction.at, interaction.source, interaction.kind, interaction.channel_detail)


def _holdings(stored: StoredFacts, rates: FxRates) -> tuple[Holding, ...]:
    balances: dict[tuple[SourceKey, str], list[StoredBalance]] = defaultdict(list)
    for balance in stored.balances:
        balances[(balance.source, balance.account_id)].append(balance)
    holdings: list[Holding] = []
    for account in stored.accounts:
        if account.product_line is None:
            continue  # no opening fact yet: its balances wait for it
        found = balances.get((account.source, account.account_id), [])
        currencies = {b.currency: b.balance_minor for b in found}
        if account.currency and account.currency not in currencies:
            currencies[account.currency] = 0  # opened, no balance fact yet
        for currency, minor in sorted(currencies.items()):
            holdings.append(
                Holding(
                    source=account.source,
                    account_id=account.account_id,
                    product_line=account.product_line,
                    product_code=account.product_code,
                    balance=Money(currency, minor, rates.exponent(currency)),
                    opened_on=account.opened_on or dt.date.min,
                    closed_on=account.closed_on,
                    card_tier=account.card_tier,
                    risk=account.risk,
                    overdue_days=account.overdue_days,
                    branch_code=account.branch_code,
                )
            )
    holdings.sort(key=lambda h: (h.source, h.account_id, h.balance.currency))
    return tuple(holdings)


def _rate_day(month: dt.date, as_of: dt.date) -> dt.date:
    """The day whose rates convert a month's figures: its last day, or as_of for this month."""
    return min(add_months(month, 1) - dt.timedelta(days=1), as_of)


def _in_cny(rates: FxRates, currency: str, minor: int, day: dt.date) -> Decimal | None:
    try:
        return rates.to_cny(Money(currency, minor, rates.exponent(currency)), day)
    except FxRateMissing:
        return None  # no rate: left out, as the totals leave it out


class _MonthSums:
    """One month's transaction figures in CNY (exact, rounded once at the end)."""

    def __init__(self) -> None:
        self.transactions = 0
        self.debit = Decimal(0)
        self.credit = Decimal(0)
        self.salary = Decimal(0)
        self.credit_card_spend = Decimal(0)
        self.debit_card_spend = Decimal(0)


def _activity(
    stored: StoredFacts,
    lines: dict[tuple[SourceKey, str], ProductLine],
    as_of: dt.date,
    rates: FxRates,
    zone: ZoneInfo,
) -> tuple[MonthlyActivity, ...]:
    start = window_start(as_of)
    this_month = first_of_month(as_of)
    sums: dict[dt.date, _MonthSums] = defaultdict(_MonthSums)
    for row in stored.activity:
        if not start <= row.month <= this_month:
            continue
        day = _rate_day(row.month, as_of)
        month = sums[row.month]
        month.transactions += row.transactions
        debit, credit, salary, purchases = (
            _in_cny(rates, row.currency, minor, day) or Decimal(0)
            for minor in (
                row.debit_minor,
                row.credit_minor,
                row.salary_minor,
                row.card_purchase_minor,
            )
        )
        month.debit = CONTEXT.add(month.debit, debit)
        month.credit = CONTEXT.add(month.credit, credit)
        month.salary = CONTEXT.add(month.salary, salary)
        # Card purchases count by the kind of card the account turns out to be.
        line = lines.get((row.source, row.account_id))
        if line is ProductLine.CREDIT_CARD:
            month.credit_card_spend = CONTEXT.add(month.credit_card_spend, purchases)
        elif line is ProductLine.DEBIT_CARD:
            month.debit_card_spend = CONTEXT.add(month.debit_card_spend, purchases)
    averages = _average_assets(stored.history, lines, as_of, rates, zone)
    empty = _MonthSums()

    def minor(amount: Decimal) -> int:
        return to_minor(amount, BASE_EXPONENT)

    return tuple(
        MonthlyActivity(
            month=month,
            transactions=sums.get(month, empty).transactions,
            debit_cny_minor=minor(sums.get(month, empty).debit),
            credit_cny_minor=minor(sums.get(month, empty).credit),
            average_assets_cny_minor=averages.get(month, 0),
            salary_credit_cny_minor=minor(sums.get(month, empty).salary),
            credit_card_spend_cny_minor=minor(sums.get(month, empty).credit_card_spend),
            debit_card_spend_cny_minor=minor(sums.get(month, empty).debit_card_spend),
        )
        for month in sorted(set(sums) | set(averages))
    )


def _days(start: dt.date, end: dt.date) -> Iterable[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def _average_assets(
    history: Sequence[StoredBalance],
    lines: dict[tuple[SourceKey, str], ProductLine],
    as_of: dt.date,
    rates: FxRates,
    zone: ZoneInfo,
) -> dict[dt.date, int]:
    """Per month of the window, from the month the first balance fact falls in: the average
    over its days (to as_of in this month) of the end-of-day total assets, in CNY at the month's
    rates. The end-of-day balance of an account is its balance fact with the highest sequence
    number among those of that day or before; accounts without an opening fact do not count."""
    series: dict[tuple[SourceKey, str, str], list[StoredBalance]] = defaultdict(list)
    for point in history:
        if (point.source, point.account_id) in lines:
            series[(point.source, point.account_id, point.currency)].append(point)
    if not series:
        return {}
    start = window_start(as_of)
    first_day = min(p.at.astimezone(zone).date() for points in series.values() for p in points)
    first_day = max(first_day, start)
    if first_day > as_of:
        return {}
    # Per day of the window, the asset total per currency (minor units).
    daily: dict[dt.date, dict[str, int]] = {
        day: defaultdict(int) for day in _days(first_day, as_of)
    }
    for (source, account_id, currency), points in series.items():
        line = lines[(source, account_id)]
        points.sort(key=lambda p: (p.at.astimezone(zone).date(), p.seq))
        best_seq = -1
        balance = 0
        index = 0
        for day in _days(start, as_of):
            while index < len(points) and points[index].at.astimezone(zone).date() <= day:
                if points[index].seq > best_seq:
                    best_seq, balance = points[index].seq, points[index].balance_minor
                index += 1
            if day >= first_day and best_seq >= 0:
                daily[day][currency] += asset_part(line, balance)
    averages: dict[dt.date, int] = {}
    month = first_of_month(first_day)
    while month <= as_of:
        days = [d for d in daily if first_of_month(d) == month]
        if days:
            rate_day = _rate_day(month, as_of)
            total = Decimal(0)
            for day in days:
                for currency, minor in daily[day].items():
                    amount = _in_cny(rates, currency, minor, rate_day)
                    if amount is not None:
                        total = CONTEXT.add(total, amount)
            averages[month] = to_minor(CONTEXT.divide(total, len(days)), BASE_EXPONENT)
        month = add_months(month, 1)
    return averages


def _consents(stored: Sequence[StoredConsent]) -> tuple[Consent, ...]:
    latest: dict[tuple[str, str], tuple[StoredConsent, tuple[dt.datetime, bool, SourceKey]]] = {}
    for item in stored:
        consent = item.consent
        # Latest capture first; on a tie the withdrawal; then a fixed order of records.
        rank = (consent.evidence.captured_at, not consent.given, item.source)
        key = (consent.channel.value, consent.purpose.value)
        if key not in latest or rank > latest[key][1]:
            latest[key] = (item, rank)
    return tuple(latest[key][0].consent for key in sorted(latest))


def _preferences(stored: Sequence[StoredPreferences]) -> Preferences:
    if not stored:
        return Preferences()
    chosen = max(stored, key=lambda p: (p.at, p.seq, p.source))
    defaults = Preferences()
    preferences = chosen.preferences
    return Preferences(
        language=preferences.language or defaults.language,
        time_zone=preferences.time_zone or defaults.time_zone,
        quiet_hours=preferences.quiet_hours,
        preferred_channel=preferences.preferred_channel,
    )


def _risk(stored: Sequence[StoredRisk]) -> RiskAssessment | None:
    if not stored:
        return None
    return max(stored, key=lambda r: (r.assessment.assessed_on, r.seq, r.source)).assessment
