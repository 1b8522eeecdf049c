"""Birth dates in the forms banks hold, and gender codes (M/F, 男/女, GB/T 2261.1)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_identity.domain.model import Gender
from zhike_identity.domain.normalise import Unusable, parse_date, parse_gender

TODAY = dt.date(2026, 6, 1)
MAY_3 = dt.date(1980, 5, 3)


@pytest.mark.parametrize(
    "raw",
    [
        "1980-05-03",
        "1980-5-3",
        "19800503",
        "1980/5/3",
        "1980/05/03",
        "1980.5.3",
        "1980年5月3日",
        "1980年05月03日",
        "1980 年 5 月 3 日",
        "１９８０－０５－０３",
        "１９８０年５月３日",
        "1980-05-03 00:00:00",
        "1980-05-03T00:00:00Z",
        " 1980-05-03 ",
    ],
)
def test_date_forms(raw: str) -> None:
    assert parse_date(raw, TODAY) == MAY_3


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("不详", "placeholder"),
        ("0000-00-00", "placeholder"),
        ("00000000", "placeholder"),
        ("1900-01-01", "placeholder"),
        ("1980-02-30", "bad_date"),
        ("1980-13-01", "bad_date"),
        ("19801301", "bad_date"),
        ("2030-01-01", "out_of_range"),
        ("1850-01-01", "out_of_range"),
        ("03/05/1980", "unknown_format"),  # day or month first: ambiguous
        ("80-05-03", "unknown_format"),
        ("1980-05", "unknown_format"),
        ("1980-05/03", "unknown_format"),  # mixed separators
        ("May 3, 1980", "unknown_format"),
        ("1" * 41, "too_long"),
    ],
)
def test_unusable_dates(raw: str, reason: str) -> None:
    with pytest.raises(Unusable) as caught:
        parse_date(raw, TODAY)

    assert caught.value.reason == reason


def test_today_defaults_to_the_real_date() -> None:
    assert parse_date("1980-05-03") == MAY_3
    with pytest.raises(Unusable):
        parse_date((dt.date.today() + dt.timedelta(days=1)).isoformat())


@given(st.dates(dt.date(TODAY.year - 150, 1, 1), TODAY))
def test_every_date_in_range_round_trips_in_every_form(date: dt.date) -> None:
    if date in {dt.date(1900, 1, 1), dt.date(1899, 12, 30), dt.date(1899, 12, 31)}:
        return  # the sentinel dates, rejected on purpose
    forms = [
        date.isoformat(),
        f"{date:%Y%m%d}",
        f"{date.year}/{date.month}/{date.day}",
        f"{date.year}.{date.month}.{date.day}",
        f"{date.year}年{date.month}月{date.day}日",
    ]
    for form in forms:
        assert parse_date(form, TODAY) == date


@pytest.mark.parametrize(
    ("raw", "gender"),
    [
        ("M", Gender.MALE),
        ("m", Gender.MALE),
        ("Male", Gender.MALE),
        ("MALE", Gender.MALE),
        ("男", Gender.MALE),
        ("1", Gender.MALE),
        ("01", Gender.MALE),
        ("１", Gender.MALE),
        ("F", Gender.FEMALE),
        ("female", Gender.FEMALE),
        ("女", Gender.FEMALE),
        (" 女性 ", Gender.FEMALE),
        ("2", Gender.FEMALE),
        ("0", None),  # GB/T 2261.1: unknown
        ("9", None),  # GB/T 2261.1: not stated
        ("未知", None),
        ("X", None),
    ],
)
def test_gender_codes(raw: str, gender: Gender | None) -> None:
    assert parse_gender(raw) is gender


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("无", "placeholder"),
        ("-", "placeholder"),
        ("3", "unknown_format"),
        ("man", "unknown_format"),
        ("男女", "unknown_format"),
        ("x" * 30, "too_long"),
    ],
)
def test_unusable_gender(raw: str, reason: str) -> None:
    with pytest.raises(Unusable) as caught:
        parse_gender(raw)

    assert caught.value.reason == reason
