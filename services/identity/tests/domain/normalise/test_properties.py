"""Every normaliser, given any text, returns its declared type or raises Unusable with a reason
from REASONS — never any other exception."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_identity.domain.model import Gender
from zhike_identity.domain.normalise import (
    KINDS,
    REASONS,
    Address,
    IdentityDocument,
    PersonName,
    Phone,
    Unusable,
    infer_id_kind,
    is_placeholder,
    name_pinyin_initials,
    normalise_address,
    normalise_email,
    normalise_id,
    normalise_name,
    normalise_phone,
    parse_date,
    parse_gender,
)

TODAY = dt.date(2026, 6, 1)

HANZI = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
FULL_WIDTH = st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E)
PUNCTUATION = st.sampled_from(list(" -+()/.,:;'·@#年月日号转\u3000\t\n"))
DIGITS = st.characters(min_codepoint=0x30, max_codepoint=0x39)
LATIN = st.characters(min_codepoint=0x41, max_codepoint=0x7A)
# Text shaped like the values a bank record holds, so Hypothesis reaches past the first checks.
RECORD_LIKE = st.text(st.one_of(DIGITS, LATIN, HANZI, FULL_WIDTH, PUNCTUATION), max_size=40)
DIGIT_LIKE = st.text(st.one_of(DIGITS, PUNCTUATION, st.sampled_from("xX+0")), max_size=30)
ANY_TEXT = st.one_of(st.text(), RECORD_LIKE, DIGIT_LIKE, st.text(HANZI, max_size=12))


def check(function: Callable[[str], Any], raw: str, expected: type | tuple[type, ...]) -> Any:
    try:
        value = function(raw)
    except Unusable as error:
        reason = error.reason
    else:
        reason = ""
    if reason:
        assert reason in REASONS
        return None
    assert isinstance(value, expected)
    return value


@given(ANY_TEXT)
def test_normalise_name_total(raw: str) -> None:
    name = check(normalise_name, raw, PersonName)
    if name is not None:
        assert name.full == name.surname + name.given
        assert name.full.isascii()
        assert name.full == name.full.lower()
        assert isinstance(name_pinyin_initials(name), str)


@given(st.sampled_from([*KINDS, "", "resident_id", "BOGUS"]), ANY_TEXT)
def test_normalise_id_total(kind: str, raw: str) -> None:
    document = check(lambda text: normalise_id(kind, text, TODAY), raw, IdentityDocument)
    if document is not None:
        assert document.kind in KINDS
        assert document.number == document.number.upper().strip()
        assert (document.birth_date is None) == (document.male is None)


@given(ANY_TEXT)
def test_infer_id_kind_total(raw: str) -> None:
    assert infer_id_kind(raw) in (None, "RESIDENT_ID")


@given(ANY_TEXT)
def test_normalise_phone_total(raw: str) -> None:
    phone = check(normalise_phone, raw, Phone)
    if phone is not None:
        assert phone.e164.startswith("+")
        assert phone.e164[1:].isdigit()
        assert 8 <= len(phone.e164) - 1 <= 15


@given(st.one_of(ANY_TEXT, st.emails()))
def test_normalise_email_total(raw: str) -> None:
    email = check(normalise_email, raw, str)
    if email is not None:
        assert email == email.lower().strip()
        assert "@" in email


@given(ANY_TEXT)
def test_parse_date_total(raw: str) -> None:
    date = check(lambda text: parse_date(text, TODAY), raw, dt.date)
    if date is not None:
        assert dt.date(TODAY.year - 150, 1, 1) <= date <= TODAY


@given(st.one_of(ANY_TEXT, st.sampled_from(["M", "f", "男", "女", "0", "1", "2", "9"])))
def test_parse_gender_total(raw: str) -> None:
    check(parse_gender, raw, (Gender, type(None)))


@given(ANY_TEXT)
def test_normalise_address_total(raw: str) -> None:
    address = check(normalise_address, raw, Address)
    if address is not None:
        assert address.text
        assert " " not in address.text
        assert address.postcode is None or (
            len(address.postcode) in (4, 5, 6) and address.postcode.isdigit()
        )


@given(ANY_TEXT)
def test_is_placeholder_total(raw: str) -> None:
    assert isinstance(is_placeholder(raw), bool)


@pytest.mark.parametrize(
    "function",
    [
        normalise_name,
        normalise_phone,
        normalise_email,
        normalise_address,
        parse_gender,
        lambda text: parse_date(text, TODAY),
        lambda text: normalise_id("RESIDENT_ID", text, TODAY),
    ],
)
@settings(max_examples=20)
@given(st.text(min_size=1001, max_size=1200))
def test_huge_inputs_are_rejected_as_too_long(function: Callable[[str], Any], raw: str) -> None:
    with pytest.raises(Unusable) as caught:
        function(raw)
    assert caught.value.reason == "too_long"
