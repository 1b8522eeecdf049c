"""A card number (PAN) is never taken as an account id, however it is written (Hypothesis):
the same check runs at both doors, IngestSourceEvents and the stream consumer."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from zhike_profile.transport.source_codec import decode_source_event
from zhike_runtime.errors import InvalidArgument
from zhike_runtime.validation import Violations

from ..source_facts import T0, balance_changed, source_event

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
    v = Violations()
    event = source_event("core", "C-1", "e-1", 1, **balance_changed(account_id, "USD", 100))
    decode_source_event(v, "", event, T0)
    try:
        v.raise_if_any()
    except InvalidArgument as error:
        return [violation.field for violation in error.violations]
    return []


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
