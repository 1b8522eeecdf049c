"""PRC resident ID numbers: check character, normalisation, legacy numbers and rejections."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zhike_identity.domain.resident_id import (
    InvalidResidentId,
    check_character,
    parse_resident_id,
)

TODAY = dt.date(2026, 6, 1)
OLDEST = dt.date(TODAY.year - 150, 1, 1)


def with_check(first17: str) -> str:
    return first17 + check_character(first17)


def test_check_character_matches_the_published_example() -> None:
    # GB 11643-1999's own worked example.
    assert check_character("11010519491231002") == "X"
    assert check_character("44052418800101001") == "4"


def test_valid_number_parses_with_birth_date_and_sex() -> None:
    parsed = parse_resident_id("11010519491231002X", TODAY)

    assert parsed.number == "11010519491231002X"
    assert parsed.birth_date == dt.date(1949, 12, 31)
    assert parsed.male is False  # sequence 002 is even


def test_odd_sequence_number_means_male() -> None:
    number = with_check("44030619900307001")

    parsed = parse_resident_id(number, TODAY)

    assert parsed.number == number
    assert parsed.birth_date == dt.date(1990, 3, 7)
    assert parsed.male is True


def test_lower_case_x_is_accepted_and_upper_cased() -> None:
    assert parse_resident_id("11010519491231002x", TODAY).number == "11010519491231002X"


@pytest.mark.parametrize(
    "raw",
    ["110105 19491231 002X", " 11010519491231002X ", "110105\u300019491231\u3000002X"],
)
def test_spaces_are_removed(raw: str) -> None:
    assert parse_resident_id(raw, TODAY).number == "11010519491231002X"


def test_legacy_15_digit_number_converts_to_18_with_its_check_character() -> None:
    parsed = parse_resident_id("110105491231002", TODAY)

    assert parsed.number == "11010519491231002X"
    assert parsed.birth_date == dt.date(1949, 12, 31)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("110105194912310021", "check character", id="wrong-check-character"),
        pytest.param(with_check("11010520000230001"), "calendar date", id="feb-30"),
        pytest.param(with_check("11010520001301001"), "calendar date", id="month-13"),
        pytest.param(with_check("11010520300101001"), "future", id="future-birth-date"),
        pytest.param(with_check("11010518500101001"), "150 years", id="over-150-years-ago"),
        pytest.param("11010519491231A02X", "17 digits", id="letter-inside"),
        pytest.param("1101051949123100XX", "17 digits", id="x-not-last"),
        pytest.param("11010519491231002Y", "17 digits", id="bad-check-letter"),
        pytest.param("11010549123100A", "digits only", id="legacy-with-letter"),
        pytest.param(with_check("01010519491231002"), "region", id="region-starts-with-0"),
        pytest.param("", "18 characters", id="empty"),
        pytest.param("1101051949123100", "18 characters", id="16-characters"),
        pytest.param("11010519491231002", "18 characters", id="17-characters"),
        pytest.param("11010519491231002X1", "18 characters", id="19-characters"),
        pytest.param("１１０１０５１９４９１２３１００２Ｘ", "17 digits", id="full-width"),
    ],
)
def test_invalid_numbers_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidResidentId, match=reason):
        parse_resident_id(raw, TODAY)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("①" * 15, id="circled-digits"),
        pytest.param("²" * 15, id="superscript-digits"),
        pytest.param("11010549123100²", id="legacy-ending-in-superscript"),
    ],
)
def test_digit_like_characters_in_a_legacy_number_are_rejected_not_crashed_on(raw: str) -> None:
    # str.isdigit() accepts these, int() does not: the parser must still say InvalidResidentId.
    with pytest.raises(InvalidResidentId):
        parse_resident_id(raw, TODAY)


# Characters Python calls digits (str.isdigit) that int() refuses: superscripts, circled digits.
_DIGIT_LIKE = "".join(c for c in map(chr, range(0x3000)) if c.isdigit() and not c.isdecimal())
# Text that reaches the length and digit checks: ASCII digits mixed with X, spaces, other
# decimal scripts (full-width, Arabic-Indic) and the digit-like characters above.
_digitish = st.text(
    alphabet=st.sampled_from("0123456789")
    | st.sampled_from(_DIGIT_LIKE)
    | st.sampled_from("Xx \u3000")
    | st.characters(categories=["Nd"]),
    min_size=14,
    max_size=19,
)


@given(st.one_of(st.text(), _digitish))
@example("11010519491231002x")
@example("110105491231002")
def test_any_text_parses_to_a_valid_number_or_is_rejected_by_name(raw: str) -> None:
    try:
        parsed = parse_resident_id(raw, TODAY)
    except InvalidResidentId:
        return
    number = parsed.number
    assert len(number) == 18
    assert number[:17].isascii()
    assert number[:17].isdigit()
    assert number[17] == check_character(number[:17])
    assert OLDEST <= parsed.birth_date <= TODAY
    assert parse_resident_id(number, TODAY) == parsed


@given(
    region=st.integers(min_value=100_000, max_value=999_999),
    birth=st.dates(min_value=OLDEST, max_value=TODAY),
    sequence=st.integers(min_value=0, max_value=999),
)
def test_seventeen_digits_with_a_valid_date_plus_check_character_parse(
    region: int, birth: dt.date, sequence: int
) -> None:
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    number = first17 + check_character(first17)

    parsed = parse_resident_id(number, TODAY)

    assert parsed.number == number
    assert parsed.birth_date == birth
    assert parsed.male is (sequence % 2 == 1)
    assert parse_resident_id(number.lower(), TODAY) == parsed
