"""A party's monthly figures, computed in sums, equal the figures of their definitions taken
literally:
- the monthly average assets, summed per stretch of days with one balance, equal every day's
  end-of-day total assets converted and averaged, for any balance history: facts in any order,
  late facts with lower sequences, facts before the window and after as_of, accounts without
  an opening fact, accounts closed (nothing from the close date, or from as_of for a close
  dated after it; 0001-01-01 included), liabilities, currencies with and without a rate;
- the monthly transaction figures, summed per month and currency before converting, equal
  every row converted and summed.

The references below are the definitions, as the profile first computed them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_profile.config import load_assessment_config
from zhike_profile.domain.assessment.money import BASE_EXPONENT, CONTEXT, FxRates, to_minor
from zhike_profile.domain.facts import ProductLine, SourceKey
from zhike_profile.domain.party_facts import (
    StoredAccount,
    StoredActivity,
    StoredBalance,
    StoredFacts,
    _in_cny,
    _rate_day,
    add_months,
    asset_part,
    first_of_month,
    party_facts,
    window_start,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
RATES = load_assessment_config().rates
AS_OF = dt.date(2026, 11, 17)
RECORDS = (SourceKey("core", "R1"), SourceKey("cards", "R2"))
ACCOUNTS = ("A", "B", "C")
LINES = (ProductLine.SAVINGS, ProductLine.CREDIT_CARD, ProductLine.MORTGAGE, None)


def _days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def reference_averages(
    history: Sequence[StoredBalance],
    lines: dict[tuple[SourceKey, str], ProductLine],
    closed: dict[tuple[SourceKey, str], dt.date],
    as_of: dt.date,
    rates: FxRates,
    zone: ZoneInfo,
) -> dict[dt.date, int]:
    """The definition, one day at a time."""
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
    daily: dict[dt.date, dict[str, int]] = {
        day: defaultdict(int) for day in _days(first_day, as_of)
    }
    for (source, account_id, currency), points in series.items():
        line = lines[(source, account_id)]
        closed_on = dt.date.max
        if (source, account_id) in closed:
            # Closed now: nothing from its close date on, nor from as_of if dated after it.
            closed_on = min(closed[(source, account_id)], as_of)
        points.sort(key=lambda p: (p.at.astimezone(zone).date(), p.seq))
        best_seq = -1
        balance = 0
        index = 0
        for day in _days(start, as_of):
            while index < len(points) and points[index].at.astimezone(zone).date() <= day:
                if points[index].seq > best_seq:
                    best_seq, balance = points[index].seq, points[index].balance_minor
                index += 1
            if first_day <= day < closed_on and best_seq >= 0:
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


moments = st.datetimes(
    min_value=dt.datetime(2025, 9, 1),
    max_value=dt.datetime(2026, 12, 10),
    timezones=st.just(dt.UTC),
)
balances = st.builds(
    StoredBalance,
    st.sampled_from(RECORDS),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(["CNY", "USD", "HKD", "CHF"]),  # CHF: no rate, left out
    st.integers(-(10**10), 10**12),
    st.integers(1, 40),
    moments,
)


@settings(max_examples=300, deadline=None)
@given(
    history=st.lists(balances, max_size=40),
    lines=st.lists(st.sampled_from(LINES), min_size=len(RECORDS) * len(ACCOUNTS)).map(
        lambda drawn: {
            (record, account): line
            for (record, account), line in zip(
                ((r, a) for r in RECORDS for a in ACCOUNTS), drawn, strict=False
            )
            if line is not None
        }
    ),
    closings=st.lists(
        st.none()
        | st.just(dt.date.min)  # a "no date" default an earlier release stored
        | st.dates(min_value=dt.date(2025, 9, 1), max_value=dt.date(2026, 12, 31)),
        min_size=len(RECORDS) * len(ACCOUNTS),
    ),
    as_of=st.dates(min_value=dt.date(2026, 1, 31), max_value=dt.date(2026, 12, 31)),
)
def test_monthly_average_assets_equal_the_day_by_day_definition(
    history: list[StoredBalance],
    lines: dict[tuple[SourceKey, str], ProductLine],
    closings: list[dt.date | None],
    as_of: dt.date,
) -> None:
    # One balance fact per account, currency and sequence, as storage keeps them.
    unique = list({(b.source, b.account_id, b.currency, b.seq): b for b in history}.values())
    keys = [(record, account) for record in RECORDS for account in ACCOUNTS]
    closed = {key: closed_on for key, closed_on in zip(keys, closings, strict=False) if closed_on}
    accounts = tuple(
        StoredAccount(
            source,
            account_id,
            line,
            "P",
            "CNY",
            "",
            dt.date(2020, 1, 1),
            closed.get((source, account_id)),
            None,
            None,
            0,
        )
        for (source, account_id), line in lines.items()
    )
    stored = StoredFacts(accounts=accounts, history=tuple(unique), records=RECORDS)
    facts = party_facts("P-1", as_of, stored, RATES, SHANGHAI)
    averages = {m.month: m.average_assets_cny_minor for m in facts.activity}
    expected = reference_averages(unique, lines, closed, as_of, RATES, SHANGHAI)
    assert averages == {month: expected.get(month, 0) for month in averages}
    assert set(expected) <= set(averages)


def test_a_months_average_counts_the_days_before_the_first_balance_as_nothing() -> None:
    at = dt.datetime(2026, 11, 10, 4, tzinfo=dt.UTC)  # 10 November in Shanghai
    stored = StoredFacts(
        accounts=(
            StoredAccount(
                RECORDS[0], "A", ProductLine.SAVINGS, "P", "CNY", "", AS_OF, None, None, None, 0
            ),
        ),
        history=(StoredBalance(RECORDS[0], "A", "CNY", 800_000, 1, at),),
        records=RECORDS,
    )
    facts = party_facts("P-1", AS_OF, stored, RATES, SHANGHAI)
    # From the first fact (10 November) to as_of (17 November): 8 days of CNY 8,000.00.
    assert [(m.month, m.average_assets_cny_minor) for m in facts.activity] == [
        (dt.date(2026, 11, 1), 800_000)
    ]


def reference_sums(
    rows: Sequence[StoredActivity],
    lines: dict[tuple[SourceKey, str], ProductLine],
    as_of: dt.date,
    rates: FxRates,
) -> dict[dt.date, tuple[int, ...]]:
    """Per month: transactions, debit, credit, salary, credit and debit card spend in CNY, each
    row converted at the month's rates and summed exactly, rounded once."""
    sums: dict[dt.date, list[Decimal]] = {}
    counts: dict[dt.date, int] = defaultdict(int)
    for row in rows:
        if not window_start(as_of) <= row.month <= first_of_month(as_of):
            continue
        day = _rate_day(row.month, as_of)
        counts[row.month] += row.transactions
        month = sums.setdefault(row.month, [Decimal(0)] * 5)
        line = lines.get((row.source, row.account_id))
        parts = (
            row.debit_minor,
            row.credit_minor,
            row.salary_minor,
            row.card_purchase_minor if line is ProductLine.CREDIT_CARD else 0,
            row.card_purchase_minor if line is ProductLine.DEBIT_CARD else 0,
        )
        for index, minor in enumerate(parts):
            amount = _in_cny(rates, row.currency, minor, day) or Decimal(0)
            month[index] = CONTEXT.add(month[index], amount)
    return {
        month: (counts[month], *(to_minor(amount, BASE_EXPONENT) for amount in figures))
        for month, figures in sums.items()
    }


activity_rows = st.builds(
    StoredActivity,
    st.sampled_from(RECORDS),
    st.sampled_from(ACCOUNTS),
    st.dates(min_value=dt.date(2025, 9, 1), max_value=dt.date(2026, 12, 1)).map(first_of_month),
    st.sampled_from(["CNY", "USD", "HKD", "CHF"]),
    st.integers(0, 50),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(activity_rows, max_size=30),
    card_lines=st.lists(
        st.sampled_from([ProductLine.CREDIT_CARD, ProductLine.DEBIT_CARD, ProductLine.SAVINGS]),
        min_size=len(RECORDS) * len(ACCOUNTS),
    ),
    as_of=st.dates(min_value=dt.date(2026, 1, 31), max_value=dt.date(2026, 12, 31)),
)
def test_monthly_transaction_figures_equal_every_row_converted_and_summed(
    rows: list[StoredActivity], card_lines: list[ProductLine], as_of: dt.date
) -> None:
    keys = [(record, account) for record in RECORDS for account in ACCOUNTS]
    lines = dict(zip(keys, card_lines, strict=False))
    accounts = tuple(
        StoredAccount(source, account_id, line, "P", "CNY", "", None, None, None, None, 0)
        for (source, account_id), line in lines.items()
    )
    stored = StoredFacts(accounts=accounts, activity=tuple(rows), records=RECORDS)

    facts = party_facts("P-1", as_of, stored, RATES, SHANGHAI)

    assert {
        m.month: (
            m.transactions,
            m.debit_cny_minor,
            m.credit_cny_minor,
            m.salary_credit_cny_minor,
            m.credit_card_spend_cny_minor,
            m.debit_card_spend_cny_minor,
        )
        for m in facts.activity
    } == reference_sums(rows, lines, as_of, RATES)


def savings_closed_on(closed_on: dt.date) -> StoredFacts:
    """CNY 8,000.00 in savings from 10 November in Shanghai, the account closed on `closed_on`
    (as an earlier release may have stored it)."""
    at = dt.datetime(2026, 11, 10, 4, tzinfo=dt.UTC)
    return StoredFacts(
        accounts=(
            StoredAccount(
                RECORDS[0],
                "A",
                ProductLine.SAVINGS,
                "P",
                "CNY",
                "",
                dt.date(2026, 11, 1),
                closed_on,
                None,
                None,
                0,
            ),
        ),
        history=(StoredBalance(RECORDS[0], "A", "CNY", 800_000, 1, at),),
        records=RECORDS,
    )


def test_an_account_stored_as_closed_on_year_one_adds_nothing_to_the_average() -> None:
    # 0001-01-01, a "no date" default: there is no day before it to count up to.
    facts = party_facts("P-1", AS_OF, savings_closed_on(dt.date.min), RATES, SHANGHAI)
    assert [(m.month, m.average_assets_cny_minor) for m in facts.activity] == [
        (dt.date(2026, 11, 1), 0)
    ]


def test_an_account_stored_as_closed_after_as_of_counts_up_to_the_day_before_as_of() -> None:
    # Closed now (the totals leave it out), whatever later day the source dated the close:
    # 10 to 16 November count, 17 November (as_of) does not, over 8 days.
    later = AS_OF + dt.timedelta(days=400)
    facts = party_facts("P-1", AS_OF, savings_closed_on(later), RATES, SHANGHAI)
    assert [(m.month, m.average_assets_cny_minor) for m in facts.activity] == [
        (dt.date(2026, 11, 1), 700_000)
    ]
