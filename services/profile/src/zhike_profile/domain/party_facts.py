"""A party's PartyFacts, assembled from the stored facts of the source records linked to it.

Storage keeps facts per source record (each its latest version); this module merges them into
the party's view, deterministically, so the same stored facts give the same PartyFacts whatever
order they were written in:

- holdings: every account whose opening fact is known, one per account and currency;
- activity: per month, transactions summed over records and currencies (converted to CNY at the
  month's rates), and the average daily total assets, from every balance fact;
- consents: per channel and purpose, the latest decision wherever it was captured (a tie goes to
  the withdrawal: the customer is contacted only on a clear yes);
- preferences: those of the record that changed them last;
- risk: the latest assessment made by as_of, whichever record holds it (then the highest
  sequence, then the record): a reassessment replaces the one before, even one still valid,
  as the customer's latest answers decide what may be sold; one dated after as_of counts from
  its day on, so it never hides one made before (with none made by as_of, the earliest, not yet
  valid);
- birth date: the party's golden record's (identity's), not any one record's.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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


# How far back interactions are read: the longest any assessment counts them over (RFM's
# frequency counts a year of contacts; the activity window starts later in most months).
INTERACTION_DAYS = 365


def interactions_start(as_of: dt.date) -> dt.date:
    """The first business day whose interactions are read for an assessment as of `as_of`."""
    return as_of - dt.timedelta(days=INTERACTION_DAYS)


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
    birth_date: dt.date | None = None,
) -> PartyFacts:
    lines = {
        (a.source, a.account_id): a.product_line
        for a in stored.accounts
        if a.product_line is not None
    }
    closed = {
        (a.source, a.account_id): a.closed_on
        for a in stored.accounts
        if a.product_line is not None and a.closed_on is not None
    }
    return PartyFacts(
        party_id=party_id,
        as_of=as_of,
        holdings=_holdings(stored, rates),
        activity=_activity(stored, lines, closed, as_of, rates, zone),
        # At the bank's time: an assessment counts them by business day (`at.date()`), and a
        # contact at 00:30 in Shanghai is 16:30 the day before in UTC.
        interactions=tuple(
            sorted(
                (replace(i, at=i.at.astimezone(zone)) for i in stored.interactions),
                key=_interaction_order,
            )
        ),
        consents=_consents(stored.consents),
        preferences=_preferences(stored.preferences),
        risk=_risk(stored.risks, as_of),
        birth_date=birth_date,
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


def _activity(
    stored: StoredFacts,
    lines: dict[tuple[SourceKey, str], ProductLine],
    closed: dict[tuple[SourceKey, str], dt.date],
    as_of: dt.date,
    rates: FxRates,
    zone: ZoneInfo,
) -> tuple[MonthlyActivity, ...]:
    """Per month, the transaction figures in CNY at the month's rates and the average assets.
    Summed per month and currency in minor units first, then converted once each: exact and
    linear, so the same as converting every row."""
    start = window_start(as_of)
    this_month = first_of_month(as_of)
    transactions: dict[dt.date, int] = defaultdict(int)
    # Per (month, currency): debit, credit, salary, credit card and debit card purchases.
    sums: dict[tuple[dt.date, str], list[int]] = {}
    for row in stored.activity:
        if not start <= row.month <= this_month:
            continue
        transactions[row.month] += row.transactions
        figures = sums.setdefault((row.month, row.currency), [0, 0, 0, 0, 0])
        figures[0] += row.debit_minor
        figures[1] += row.credit_minor
        figures[2] += row.salary_minor
        # Card purchases count by the kind of card the account turns out to be.
        line = lines.get((row.source, row.account_id))
        if line is ProductLine.CREDIT_CARD:
            figures[3] += row.card_purchase_minor
        elif line is ProductLine.DEBIT_CARD:
            figures[4] += row.card_purchase_minor
    in_cny: dict[dt.date, list[Decimal]] = {}
    for (month, currency), figures in sums.items():
        day = _rate_day(month, as_of)
        totals = in_cny.setdefault(month, [Decimal(0)] * 5)
        for index, summed in enumerate(figures):
            if summed:
                amount = _in_cny(rates, currency, summed, day)
                if amount is not None:
                    totals[index] = CONTEXT.add(totals[index], amount)
    averages = _average_assets(stored.history, lines, closed, as_of, rates, zone)
    nothing = [Decimal(0)] * 5

    def minor(amount: Decimal) -> int:
        return to_minor(amount, BASE_EXPONENT)

    activity = []
    for month in sorted(set(transactions) | set(averages)):
        debit, credit, salary, credit_card, debit_card = in_cny.get(month, nothing)
        activity.append(
            MonthlyActivity(
                month=month,
                transactions=transactions.get(month, 0),
                debit_cny_minor=minor(debit),
                credit_cny_minor=minor(credit),
                average_assets_cny_minor=averages.get(month, 0),
                salary_credit_cny_minor=minor(salary),
                credit_card_spend_cny_minor=minor(credit_card),
                debit_card_spend_cny_minor=minor(debit_card),
            )
        )
    return tuple(activity)


def _average_assets(
    history: Sequence[StoredBalance],
    lines: dict[tuple[SourceKey, str], ProductLine],
    closed: dict[tuple[SourceKey, str], dt.date],
    as_of: dt.date,
    rates: FxRates,
    zone: ZoneInfo,
) -> dict[dt.date, int]:
    """Per month of the window, from the month the first balance fact falls in: the average
    over its days (to as_of in this month) of the end-of-day total assets, in CNY at the month's
    rates. The end-of-day balance of an account is its balance fact with the highest sequence
    number among those of that day or before; accounts without an opening fact do not count,
    nor does a closed account from its close date on (`closed`: the accounts closed now; a
    source closes an account without sending a last balance of zero), or from as_of if the
    close is dated after it (closed now, as the totals count it; earlier releases stored such
    dates, and 0001-01-01 too).

    Summed per stretch of days with one balance, not day by day: the conversion is exact and
    linear, so converting a month's day-sum per currency once gives the same figure as converting
    every day's total."""
    series: dict[tuple[SourceKey, str, str], list[tuple[dt.date, int, int]]] = defaultdict(list)
    for point in history:
        if (point.source, point.account_id) in lines:
            day = point.at.astimezone(zone).date()
            series[(point.source, point.account_id, point.currency)].append(
                (day, point.seq, point.balance_minor)
            )
    if not series:
        return {}
    first_day = max(min(p[0] for points in series.values() for p in points), window_start(as_of))
    if first_day > as_of:
        return {}
    # Per month and currency, the sum over the month's days of the end-of-day asset parts.
    day_sums: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (source, account_id, currency), points in series.items():
        line = lines[(source, account_id)]
        closed_on = closed.get((source, account_id))
        if closed_on is not None:
            closed_on = min(closed_on, as_of)
        points.sort(key=lambda p: (p[0], p[1]))
        # (first day, asset part) each time the best fact so far changes; a fact from before
        # the first day counts from the first day.
        stretches: list[tuple[dt.date, int]] = []
        best_seq = -1
        for day, seq, balance in points:
            if seq <= best_seq:
                continue
            best_seq = seq
            since = max(day, first_day)
            if stretches and stretches[-1][0] == since:
                stretches.pop()
            stretches.append((since, asset_part(line, balance)))
        for index, (since, value) in enumerate(stretches):
            if since > as_of or (closed_on is not None and since >= closed_on):
                break  # so a day before closed_on exists: 0001-01-01 has none
            following = stretches[index + 1][0] if index + 1 < len(stretches) else None
            until = as_of if following is None else min(following - _DAY, as_of)
            if closed_on is not None:
                until = min(until, closed_on - _DAY)
            if value:
                _add_stretch(day_sums, currency, since, until, value)
    averages: dict[dt.date, int] = {}
    month = first_of_month(first_day)
    while month <= as_of:
        following_month = add_months(month, 1)
        days = (min(following_month - _DAY, as_of) - max(month, first_day)).days + 1
        rate_day = _rate_day(month, as_of)
        total = Decimal(0)
        for currency, minor in day_sums.get(month, {}).items():
            amount = _in_cny(rates, currency, minor, rate_day)
            if amount is not None:
                total = CONTEXT.add(total, amount)
        averages[month] = to_minor(CONTEXT.divide(total, days), BASE_EXPONENT)
        month = following_month
    return averages


_DAY = dt.timedelta(days=1)


def _add_stretch(
    day_sums: dict[dt.date, dict[str, int]],
    currency: str,
    since: dt.date,
    until: dt.date,
    value: int,
) -> None:
    """Adds `value` for each day from `since` to `until` (inclusive) to its month's sum."""
    while since <= until:
        month = first_of_month(since)
        last = min(until, add_months(month, 1) - _DAY)
        day_sums[month][currency] += value * ((last - since).days + 1)
        since = last + _DAY


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


def _risk(stored: Sequence[StoredRisk], as_of: dt.date) -> RiskAssessment | None:
    """The latest assessment made by as_of; with none, the earliest made after it."""
    made = [r for r in stored if r.assessment.assessed_on <= as_of]
    if made:
        return max(made, key=lambda r: (r.assessment.assessed_on, r.seq, r.source)).assessment
    if not stored:
        return None
    return min(stored, key=lambda r: (r.assessment.assessed_on, -r.seq, r.source)).assessment
