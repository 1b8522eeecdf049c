"""The checks both doors (IngestSourceEvents and the stream consumer) make of a source event:
a card number (PAN) is never taken as an account id, however it is written (Hypothesis); a
record's dates (opened, closed, risk assessed) are dates a bank record can hold."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike.source.v1 import source_event_pb2 as pb
from zhike_profile.transport.source_codec import decode_source_event
from zhike_runtime.errors import InvalidArgument
from zhike_runtime.validation import Violations

from ..source_facts import (
    T0,
    account_closed,
    account_opened,
    balance_changed,
    card_issued,
    consent,
    date,
    interaction,
    loan_drawn,
    risk_assessed,
    source_event,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Zero of some scripts whose digits a source system may send (ASCII, full-width, Arabic-Indic,
# Extended Arabic-Indic, Devanagari, Bengali).
ZEROS = ("0", "\uff10", "\u0660", "\u06f0", "\u0966", "\u09e6")
# Punctuation, separators and symbols: what a number is written with between its digits. Not
# those that NFKC turns into letters or digits (U+2121 TELEPHONE SIGN is "TEL", U+2474 is "(1)"):
# they change what is read, and are no separators. Nor those NFC takes apart (U+1D15F is two
# characters): the account id's limit of 64 characters counts them after NFC.
SEPARATORS = st.characters(categories=("P", "Zs", "S")).filter(
    lambda char: (
        unicodedata.is_normalized("NFC", char)
        and not any(c.isalnum() for c in unicodedata.normalize("NFKC", char))
    )
)


def with_luhn_digit(digits: list[int]) -> list[int]:
    """`digits` and the check digit that makes them pass the Luhn check."""
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 0:  # doubled: the check digit will stand to their right
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return [*digits, (10 - total % 10) % 10]


@st.composite
def written(draw: st.DrawFn, digits: list[int]) -> str:
    """`digits` in any script, each followed by up to two separators."""
    text = ""
    for digit in digits:
        text += chr(ord(draw(st.sampled_from(ZEROS))) + digit)
        text += draw(st.text(SEPARATORS, max_size=2))
    return text


card_numbers = st.lists(st.integers(0, 9), min_size=12, max_size=18).map(with_luhn_digit)
not_card_numbers = card_numbers.map(lambda digits: [*digits[:-1], (digits[-1] + 1) % 10])


def account_id_violations(account_id: str) -> list[str]:
    return violated_fields(
        source_event("core", "C-1", "e-1", 1, **balance_changed(account_id, "USD", 100))
    )


@given(st.data(), card_numbers)
def test_a_card_number_is_refused_as_account_id_whatever_its_separators_and_digits(
    data: st.DataObject, digits: list[int]
) -> None:
    account_id = data.draw(written(digits))

    assert account_id_violations(account_id) == ["balance_changed.account_id"]


@given(st.data(), not_card_numbers)
def test_a_number_failing_the_luhn_check_is_taken_as_account_id_whatever_its_separators(
    data: st.DataObject, digits: list[int]
) -> None:
    account_id = data.draw(written(digits))

    assert account_id_violations(account_id) == []


def test_a_letter_keeps_two_digit_groups_apart() -> None:
    # "4111 1111 1111 1111" is a card number; with a letter inside it is two shorter runs.
    assert account_id_violations("41111111X11111111") == []


def test_a_card_number_after_a_prefix_is_refused() -> None:
    assert account_id_violations("CARD 4111-1111-1111-1111") == ["balance_changed.account_id"]


# --- dates of a bank record --------------------------------------------------------------------
# T0 is 2 November 2026, 10:00 in Shanghai: the events' day in the bank's time zone.


def violated_fields(event: pb.SourceEvent) -> list[str]:
    v = Violations()
    decode_source_event(v, "", event, T0, SHANGHAI)
    try:
        v.raise_if_any()
    except InvalidArgument as error:
        return [violation.field for violation in error.violations]
    return []


def closed_on(day: dt.date, at: dt.datetime = T0) -> pb.SourceEvent:
    return source_event("core", "C-1", "e-1", 2, at, **account_closed("ACC-1", day))


def assessed_on(day: dt.date, at: dt.datetime = T0) -> pb.SourceEvent:
    expires = day + dt.timedelta(days=365)
    return source_event("core", "C-1", "e-1", 1, at, **risk_assessed(4, day, expires))


def opened_on(fact: str, day: dt.date) -> pb.SourceEvent:
    """An opening fact of each kind (AccountOpened, CardIssued, LoanDrawn, InvestmentBought)
    dated `day`."""
    bought = pb.InvestmentBought(
        account_id="WM-1",
        product_code="WM-R3",
        product_risk=pb.PRODUCT_RISK_R3,
        currency="CNY",
        amount_minor_units=100_000_00,
        holding_minor_units=100_000_00,
    )
    facts = {
        "account_opened": account_opened("ACC-1"),
        "card_issued": card_issued("CC-1"),
        "loan_drawn": loan_drawn("LN-1", 100_000_00),
        "investment_bought": {"investment_bought": bought},
    }
    event = source_event("core", "C-1", "e-1", 1, **facts[fact])
    getattr(getattr(event, fact), OPENING_DATES[fact]).CopyFrom(date(day))
    return event


OPENING_DATES = {
    "account_opened": "open_date",
    "card_issued": "issue_date",
    "loan_drawn": "draw_date",
    "investment_bought": "trade_date",
}


def test_a_close_date_of_year_one_is_refused_naming_it() -> None:
    # 0001-01-01: many systems' "no date" (.NET's DateTime.MinValue).
    assert violated_fields(closed_on(dt.date(1, 1, 1))) == ["account_closed.close_date"]


@pytest.mark.parametrize("fact", sorted(OPENING_DATES))
def test_an_opening_date_of_year_one_is_refused_naming_it(fact: str) -> None:
    assert violated_fields(opened_on(fact, dt.date(1, 1, 1))) == [f"{fact}.{OPENING_DATES[fact]}"]


def test_a_close_date_in_the_year_150_years_before_the_events_is_taken() -> None:
    # The floor identity sets for a birth date: no account is older than its holder.
    assert violated_fields(closed_on(dt.date(1876, 1, 1))) == []


def test_a_close_date_in_the_year_before_that_is_refused_naming_it() -> None:
    assert violated_fields(closed_on(dt.date(1875, 12, 31))) == ["account_closed.close_date"]


def test_a_close_date_400_days_after_the_event_is_refused_naming_it() -> None:
    later = dt.date(2026, 11, 2) + dt.timedelta(days=400)
    assert violated_fields(closed_on(later)) == ["account_closed.close_date"]


def test_a_close_date_two_days_after_the_events_day_at_the_bank_is_refused_naming_it() -> None:
    assert violated_fields(closed_on(dt.date(2026, 11, 4))) == ["account_closed.close_date"]


def test_a_close_date_the_day_after_the_events_day_at_the_bank_is_taken() -> None:
    # A source may date by a calendar a day ahead of the bank's.
    assert violated_fields(closed_on(dt.date(2026, 11, 3))) == []


def test_a_close_date_is_measured_from_the_events_day_in_the_banks_time_zone() -> None:
    # 17:00 UTC on 1 November is 01:00 on 2 November in Shanghai: 3 November is a day after.
    at = dt.datetime(2026, 11, 1, 17, tzinfo=dt.UTC)
    assert violated_fields(closed_on(dt.date(2026, 11, 3), at)) == []


def test_an_assess_date_decades_after_the_event_is_refused_naming_it() -> None:
    # 2062 for 2026: a typo that would otherwise hide every other record's valid assessment.
    assert violated_fields(assessed_on(dt.date(2062, 11, 1))) == [
        "risk_assessment_completed.assess_date"
    ]


def test_an_assess_date_the_day_after_the_events_day_at_the_bank_is_taken() -> None:
    assert violated_fields(assessed_on(dt.date(2026, 11, 3))) == []


def test_an_assess_date_of_year_one_is_refused_naming_it() -> None:
    assert violated_fields(assessed_on(dt.date(1, 1, 1))) == [
        "risk_assessment_completed.assess_date"
    ]


# --- no card, mobile or ID number in any code or text ------------------------------------------

CARD = "4111 1111 1111 1111"  # a test card number: passes the Luhn check


def with_field(fact: str, field: str, value: str, **builder: Any) -> pb.SourceEvent:
    event = source_event("core", "C-1", "e-1", 1, **builder)
    message = getattr(event, fact)
    *path, last = field.split(".")
    for step in path:
        message = getattr(message, step)
    setattr(message, last, value)
    return event


@pytest.mark.parametrize(
    ("fact", "field", "value", "builder"),
    [
        ("account_opened", "product_code", CARD, account_opened("ACC-1")),
        ("account_opened", "branch_code", CARD.replace(" ", ""), account_opened("ACC-1")),
        ("interaction_recorded", "detail", CARD.replace(" ", "-"), interaction()),
        ("consent_given", "evidence.text_version", CARD.replace(" ", "."), consent(True)),
        ("consent_given", "evidence.captured_where", f"branch {CARD}", consent(True)),
        ("consent_given", "evidence.captured_where", "张三 13812345678", consent(True)),
        ("consent_given", "evidence.captured_where", "ID 11010519491231002X", consent(True)),
    ],
    ids=[
        "product code",
        "branch code",
        "interaction detail",
        "consent text version",
        "consent place: a card",
        "consent place: a mobile",
        "consent place: an ID number",
    ],
)
def test_a_card_mobile_or_id_number_in_a_code_or_text_is_refused_naming_the_field(
    fact: str, field: str, value: str, builder: dict[str, Any]
) -> None:
    # Stored, shown to tellers, and a product code published in ProfileChanged.
    assert violated_fields(with_field(fact, field, value, **builder)) == [f"{fact}.{field}"]


def test_codes_with_long_runs_of_digits_that_are_no_card_number_are_taken() -> None:
    # A reference number in an interaction's detail: 17 digits, failing the Luhn check.
    event = with_field("interaction_recorded", "detail", "REF-20261205123456788", **interaction())
    assert violated_fields(event) == []
