"""The working-day calendar: the shipped file is the State Council's, holidays and make-up
working days (调休) win over the weekday, years the file lacks are reported, bad files named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import chinese_calendar  # type: ignore[import-untyped]
import pytest

from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.calendar import (
    CalendarError,
    DayKind,
    WorkingCalendar,
    parse_calendar,
    weekday_calendar,
)

SHIPPED = load_calendar()


def days_of(year: int) -> list[dt.date]:
    first = dt.date(year, 1, 1)
    return [first + dt.timedelta(days=n) for n in range((dt.date(year + 1, 1, 1) - first).days)]


def test_the_shipped_file_covers_2025_and_2026() -> None:
    assert SHIPPED.years == {2025, 2026}


@pytest.mark.parametrize(
    ("day", "kind", "holiday"),
    [
        (dt.date(2026, 10, 1), DayKind.PUBLIC_HOLIDAY, "国庆节"),  # Thursday
        (dt.date(2026, 10, 3), DayKind.PUBLIC_HOLIDAY, "国庆节"),  # Saturday inside the holiday
        (dt.date(2026, 10, 7), DayKind.PUBLIC_HOLIDAY, "国庆节"),  # Wednesday, its last day
        (dt.date(2026, 10, 8), DayKind.WORKING_DAY, ""),
        (dt.date(2026, 9, 20), DayKind.MAKE_UP_WORKING_DAY, "国庆节"),  # a Sunday worked
        (dt.date(2026, 10, 10), DayKind.MAKE_UP_WORKING_DAY, "国庆节"),  # a Saturday worked
        (dt.date(2026, 9, 25), DayKind.PUBLIC_HOLIDAY, "中秋节"),  # Friday
        (dt.date(2026, 2, 14), DayKind.MAKE_UP_WORKING_DAY, "春节"),
        (dt.date(2026, 2, 23), DayKind.PUBLIC_HOLIDAY, "春节"),  # Monday, 正月初七
        (dt.date(2026, 1, 4), DayKind.MAKE_UP_WORKING_DAY, "元旦"),
        (dt.date(2025, 10, 6), DayKind.PUBLIC_HOLIDAY, "国庆节、中秋节"),
        (dt.date(2025, 1, 26), DayKind.MAKE_UP_WORKING_DAY, "春节"),
        (dt.date(2026, 3, 7), DayKind.WEEKEND, ""),  # an ordinary Saturday
        (dt.date(2026, 3, 9), DayKind.WORKING_DAY, ""),  # an ordinary Monday
    ],
)
def test_each_day_is_what_the_notice_says(day: dt.date, kind: DayKind, holiday: str) -> None:
    found = SHIPPED.day(day)
    assert (found.kind, found.holiday, found.covered) == (kind, holiday, True)
    assert SHIPPED.is_working_day(day) is kind.working


def test_the_file_agrees_with_chinese_calendar_on_every_day_both_cover() -> None:
    package_years = {day.year for day in chinese_calendar.holidays}
    common = sorted(SHIPPED.years & package_years)
    assert common == [2025, 2026]  # both know the years the file ships; else update either
    for year in common:
        for day in days_of(year):
            assert SHIPPED.is_working_day(day) is chinese_calendar.is_workday(day), day
            in_holiday = SHIPPED.day(day).kind is DayKind.PUBLIC_HOLIDAY
            assert in_holiday is (day in chinese_calendar.holidays), day
            made_up = SHIPPED.day(day).kind is DayKind.MAKE_UP_WORKING_DAY
            assert made_up is (day in chinese_calendar.workdays), day


def test_a_year_the_file_lacks_follows_the_weekday_rule_and_says_so() -> None:
    new_year_2027 = SHIPPED.day(dt.date(2027, 1, 1))  # a Friday; surely a holiday, not known yet
    assert (new_year_2027.kind, new_year_2027.covered) == (DayKind.WORKING_DAY, False)
    assert SHIPPED.day(dt.date(2027, 1, 2)).kind is DayKind.WEEKEND
    assert SHIPPED.uncovered_years(dt.date(2024, 6, 1), dt.date(2027, 2, 1)) == (2024, 2027)


def test_the_coverage_gap_shows_the_next_year_ahead_of_time() -> None:
    assert SHIPPED.coverage_gap(dt.date(2026, 6, 1), ahead_days=90) == ()
    assert SHIPPED.coverage_gap(dt.date(2026, 11, 1), ahead_days=90) == (2027,)


def test_next_working_day_skips_a_holiday_and_its_weekend() -> None:
    assert SHIPPED.next_working_day(dt.date(2026, 10, 1)) == dt.date(2026, 10, 8)
    assert SHIPPED.next_working_day(dt.date(2026, 9, 19)) == dt.date(2026, 9, 20)  # Sun worked
    assert weekday_calendar().next_working_day(dt.date(2026, 10, 3)) == dt.date(2026, 10, 5)


def year_block(**fields: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "notice": "test",
        "holidays": [
            {"name": "测试节", "en": "Test day", "from": "2030-05-01", "to": "2030-05-03"}
        ],
        "working_days": [{"date": "2030-05-05", "for": "测试节"}],  # a Sunday
    }
    block.update(fields)
    return block


def test_a_document_with_iso_strings_or_dates_gives_the_same_calendar() -> None:
    text = parse_calendar({"years": {"2030": year_block()}})
    dates = parse_calendar(
        {
            "years": {
                2030: year_block(
                    holidays=[
                        {
                            "name": "测试节",
                            "en": "Test day",
                            "from": dt.date(2030, 5, 1),
                            "to": dt.date(2030, 5, 3),
                        }
                    ],
                    working_days=[{"date": dt.date(2030, 5, 5), "for": "测试节"}],
                )
            }
        }
    )
    for calendar in (text, dates):
        assert calendar.day(dt.date(2030, 5, 2)).kind is DayKind.PUBLIC_HOLIDAY
        assert calendar.day(dt.date(2030, 5, 5)).kind is DayKind.MAKE_UP_WORKING_DAY


def test_every_problem_of_a_bad_document_is_named_at_once() -> None:
    bad = year_block(
        holidays=[
            {"name": "测试节", "en": "Test day", "from": "2030-05-03", "to": "2030-05-01"},
            {"name": "", "en": "x", "from": "2030-13-01", "to": "2030-05-01", "colour": "red"},
            {"name": "双重", "en": "Twice", "from": "2030-06-01", "to": "2030-06-02"},
        ],
        working_days=[
            {"date": "2030-05-06", "for": "测试节"},  # a Monday
            {"date": "2030-06-01", "for": "双重"},  # a Saturday, already a holiday
        ],
    )
    with pytest.raises(CalendarError) as raised:
        parse_calendar({"years": {2030: bad, "twenty": {}}})
    fields = {(v.field, v.description) for v in raised.value.violations}
    assert ("years.2030.holidays[0].to", "must not be before from") in fields
    assert ("years.2030.holidays[1].name", "is required text") in fields
    assert ("years.2030.holidays[1].from", "must be a date, YYYY-MM-DD") in fields
    assert ("years.2030.holidays[1]", "unknown fields: colour") in fields
    assert (
        "years.2030.working_days[0].date",
        "2030-05-06 is a Monday: a make-up working day is a weekend day",
    ) in fields
    assert (
        "years.2030.working_days[1]",
        "2030-06-01 is already listed at years.2030.holidays[2]",
    ) in fields
    assert ("years.twenty", "a year must be an integer from 2000 to 2999") in fields


def test_a_document_without_years_is_refused() -> None:
    with pytest.raises(CalendarError) as raised:
        parse_calendar(["2026"])
    assert raised.value.violations[0].field == "years"


def test_a_replacement_file_is_read_instead_of_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text(
        "years:\n  2027:\n    holidays:\n"
        "      - {name: 元旦, en: New Year's Day, from: 2027-01-01, to: 2027-01-03}\n",
        encoding="utf-8",
    )
    calendar = load_calendar(path)
    assert isinstance(calendar, WorkingCalendar)
    assert calendar.years == {2027}
    assert calendar.day(dt.date(2027, 1, 1)).kind is DayKind.PUBLIC_HOLIDAY


def test_a_bad_replacement_file_is_named_in_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text("years:\n  2027:\n    working_days: [{date: 2027-01-04}]\n", encoding="utf-8")
    with pytest.raises(CalendarError) as raised:
        load_calendar(path)
    assert [v.field for v in raised.value.violations] == [
        f"{path}: years.2027.working_days[0].date",  # 4 January 2027 is a Monday
        f"{path}: years.2027.working_days[0].for",
    ]
    with pytest.raises(CalendarError) as missing:
        load_calendar(tmp_path / "absent.yaml")
    assert missing.value.violations[0].field == str(tmp_path / "absent.yaml")
