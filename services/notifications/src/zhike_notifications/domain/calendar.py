"""China's working-day calendar: public holidays and make-up working days (调休), pure.

The days come from a data file (`zhike_notifications/calendars/cn.yaml`, one block per year as the
State Council announces it); `parse_calendar` turns its parsed document into a `WorkingCalendar`
and names every problem at once (`CalendarError`, an `InvalidArgument`).

A date in a year the file has no block for is not guessed at: it follows the weekday/weekend rule
alone (Monday–Friday working, Saturday–Sunday rest), its `CalendarDay.covered` is False, and
`uncovered_years` / `coverage_gap` tell the service which years to report, so operators add the
next year's block before it is needed. Holding marketing back for a whole uncovered year would
be worse than the risk of one message on a holiday that the file does not know yet.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from zhike_runtime.errors import FieldViolation, InvalidArgument

SATURDAY = 5
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class DayKind(enum.StrEnum):
    WORKING_DAY = "working_day"  # Monday to Friday, no holiday
    WEEKEND = "weekend"  # Saturday or Sunday, not a make-up working day
    PUBLIC_HOLIDAY = "public_holiday"  # inside a holiday period, whatever the weekday
    MAKE_UP_WORKING_DAY = "make_up_working_day"  # 调休上班: a Saturday or Sunday worked

    @property
    def working(self) -> bool:
        return self in (DayKind.WORKING_DAY, DayKind.MAKE_UP_WORKING_DAY)


@dataclass(frozen=True)
class Holiday:
    name: str  # as the notice says: "国庆节"
    name_en: str
    first: dt.date
    last: dt.date  # included


@dataclass(frozen=True)
class CalendarDay:
    date: dt.date
    kind: DayKind
    holiday: str = ""  # the holiday a rest day belongs to, or a make-up day is worked for
    covered: bool = True  # False: the file has no block for this year (weekday rule only)

    @property
    def working(self) -> bool:
        return self.kind.working


class CalendarError(InvalidArgument):
    """A calendar document that cannot be used; every problem is named (field and why)."""


class WorkingCalendar:
    """Which days are working days. Immutable once built."""

    def __init__(
        self,
        years: Iterable[int],
        holidays: Iterable[Holiday] = (),
        make_up_days: Mapping[dt.date, str] | None = None,
    ) -> None:
        self.years = frozenset(years)
        self.holidays = tuple(sorted(holidays, key=lambda h: h.first))
        rest: dict[dt.date, str] = {}
        for holiday in self.holidays:
            day = holiday.first
            while day <= holiday.last:
                rest[day] = holiday.name
                day += dt.timedelta(days=1)
        self._rest_days = MappingProxyType(rest)
        self._make_up_days = MappingProxyType(dict(make_up_days or {}))

    def covers(self, day: dt.date) -> bool:
        return day.year in self.years

    def day(self, day: dt.date) -> CalendarDay:
        covered = self.covers(day)
        holiday = self._rest_days.get(day)
        if holiday is not None:
            return CalendarDay(day, DayKind.PUBLIC_HOLIDAY, holiday, covered)
        worked_for = self._make_up_days.get(day)
        if worked_for is not None:
            return CalendarDay(day, DayKind.MAKE_UP_WORKING_DAY, worked_for, covered)
        if day.weekday() >= SATURDAY:
            return CalendarDay(day, DayKind.WEEKEND, covered=covered)
        return CalendarDay(day, DayKind.WORKING_DAY, covered=covered)

    def is_working_day(self, day: dt.date) -> bool:
        return self.day(day).working

    def next_working_day(self, day: dt.date) -> dt.date:
        """`day` itself when it is a working day, else the first one after it."""
        while not self.is_working_day(day):
            day += dt.timedelta(days=1)
        return day

    def uncovered_years(self, first: dt.date, last: dt.date) -> tuple[int, ...]:
        """The years from `first` to `last` (included) that the calendar has no block for."""
        return tuple(year for year in range(first.year, last.year + 1) if year not in self.years)

    def coverage_gap(self, today: dt.date, ahead_days: int = 90) -> tuple[int, ...]:
        """Years between `today` and `ahead_days` later that are not covered: what the service
        reports (log and metric) so the next year's block is added in time."""
        return self.uncovered_years(today, today + dt.timedelta(days=ahead_days))

    def __repr__(self) -> str:
        return f"WorkingCalendar(years={sorted(self.years)})"


def weekday_calendar() -> WorkingCalendar:
    """A calendar that covers no year: every day follows the weekday/weekend rule."""
    return WorkingCalendar(())


# --- the data file's document --------------------------------------------------------------

_YEAR_FIELDS = frozenset({"notice", "holidays", "working_days"})
_HOLIDAY_FIELDS = frozenset({"name", "en", "from", "to"})
_WORKING_DAY_FIELDS = frozenset({"date", "for"})


def parse_calendar(document: object) -> WorkingCalendar:
    """The calendar a document describes (what `yaml.safe_load` gives for cn.yaml):

        {"years": {2026: {"notice": "…", "holidays": [{"name", "en", "from", "to"}…],
                          "working_days": [{"date", "for"}…]}}}

    Dates are `datetime.date` or ISO strings. A year's days may reach into the next or the
    previous year (a notice sometimes moves a working day there), no day may be listed twice,
    and a make-up working day must be a Saturday or Sunday.
    """
    problems: list[FieldViolation] = []
    if not isinstance(document, Mapping) or not isinstance(document.get("years"), Mapping):
        raise CalendarError([FieldViolation("years", "must be a mapping of year to its days")])
    years: list[int] = []
    holidays: list[Holiday] = []
    make_up: dict[dt.date, str] = {}
    listed: dict[dt.date, str] = {}  # every date listed, and where: no date twice

    def note(day: dt.date, where: str) -> None:
        if day in listed:
            problems.append(FieldViolation(where, f"{day} is already listed at {listed[day]}"))
        else:
            listed[day] = where

    for key, block in document["years"].items():
        year = _year(key)
        field = f"years.{key}"
        if year is None:
            problems.append(FieldViolation(field, "a year must be an integer from 2000 to 2999"))
            continue
        if not isinstance(block, Mapping):
            problems.append(FieldViolation(field, "must be a mapping with holidays, working_days"))
            continue
        unknown = sorted(str(k) for k in block if k not in _YEAR_FIELDS)
        if unknown:
            problems.append(FieldViolation(field, f"unknown fields: {', '.join(unknown)}"))
        years.append(year)
        for index, entry in enumerate(_entries(block, "holidays", field, problems)):
            where = f"{field}.holidays[{index}]"
            holiday = _holiday(entry, year, where, problems)
            if holiday is None:
                continue
            holidays.append(holiday)
            day = holiday.first
            while day <= holiday.last:
                note(day, where)
                day += dt.timedelta(days=1)
        for index, entry in enumerate(_entries(block, "working_days", field, problems)):
            where = f"{field}.working_days[{index}]"
            worked = _working_day(entry, year, where, problems)
            if worked is not None:
                note(worked[0], where)
                make_up[worked[0]] = worked[1]
    if problems:
        raise CalendarError(problems)
    return WorkingCalendar(years, holidays, make_up)


def _year(key: object) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        year = key
    elif isinstance(key, str) and key.isdigit():
        year = int(key)
    else:
        return None
    return year if 2000 <= year <= 2999 else None


def _entries(
    block: Mapping[object, object], name: str, field: str, problems: list[FieldViolation]
) -> list[Mapping[object, object]]:
    entries = block.get(name, [])
    if entries is None:
        return []
    if not isinstance(entries, list):
        problems.append(FieldViolation(f"{field}.{name}", "must be a list"))
        return []
    good: list[Mapping[object, object]] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, Mapping):
            good.append(entry)
        else:
            problems.append(FieldViolation(f"{field}.{name}[{index}]", "must be a mapping"))
    return good


def _holiday(
    entry: Mapping[object, object], year: int, where: str, problems: list[FieldViolation]
) -> Holiday | None:
    before = len(problems)
    _no_unknown(entry, _HOLIDAY_FIELDS, where, problems)
    name = _text(entry, "name", where, problems)
    name_en = _text(entry, "en", where, problems)
    first = _date(entry, "from", year, where, problems)
    last = _date(entry, "to", year, where, problems)
    if first is not None and last is not None:
        if last < first:
            problems.append(FieldViolation(f"{where}.to", "must not be before from"))
        elif (last - first).days > 15:
            problems.append(FieldViolation(f"{where}.to", "a holiday lasts at most 16 days"))
    if len(problems) > before or first is None or last is None:
        return None
    return Holiday(name, name_en, first, last)


def _working_day(
    entry: Mapping[object, object], year: int, where: str, problems: list[FieldViolation]
) -> tuple[dt.date, str] | None:
    before = len(problems)
    _no_unknown(entry, _WORKING_DAY_FIELDS, where, problems)
    day = _date(entry, "date", year, where, problems)
    if day is not None and day.weekday() < SATURDAY:
        problems.append(
            FieldViolation(
                f"{where}.date",
                f"{day} is a {WEEKDAYS[day.weekday()]}: a make-up working day is a weekend day",
            )
        )
    worked_for = _text(entry, "for", where, problems)
    if len(problems) > before or day is None:
        return None
    return day, worked_for


def _no_unknown(
    entry: Mapping[object, object],
    known: frozenset[str],
    where: str,
    problems: list[FieldViolation],
) -> None:
    unknown = sorted(str(k) for k in entry if k not in known)
    if unknown:
        problems.append(FieldViolation(where, f"unknown fields: {', '.join(unknown)}"))


def _text(
    entry: Mapping[object, object], name: str, where: str, problems: list[FieldViolation]
) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        problems.append(FieldViolation(f"{where}.{name}", "is required text"))
        return ""
    return value.strip()


def _date(
    entry: Mapping[object, object],
    name: str,
    year: int,
    where: str,
    problems: list[FieldViolation],
) -> dt.date | None:
    value = entry.get(name)
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        problems.append(FieldViolation(f"{where}.{name}", "must be a date, YYYY-MM-DD"))
        return None
    if abs(value.year - year) > 1:
        problems.append(
            FieldViolation(f"{where}.{name}", f"{value} is too far from the year {year}")
        )
        return None
    return value
