"""Quiet hours next to a clock change: a wall time the clocks skip (spring forward) begins or
ends quiet hours at the instant the clocks change, so a message is never held longer than the
customer's quiet hours; a wall time the clocks show twice (fall back) is read the quieter way."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.model import Category
from zhike_notifications.domain.quiet_hours import (
    QuietHours,
    SendWindowPolicy,
    allowed_at,
    next_allowed,
)

CN = load_calendar()
POLICY = SendWindowPolicy()
SERVICE = Category.SERVICE
MINUTE = dt.timedelta(minutes=1)

SANTIAGO = ZoneInfo("America/Santiago")
CAIRO = ZoneInfo("Africa/Cairo")
BEIRUT = ZoneInfo("Asia/Beirut")
HAVANA = ZoneInfo("America/Havana")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # moves its clocks by half an hour


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone)


def hours(start: tuple[int, int], end: tuple[int, int]) -> QuietHours:
    return QuietHours(dt.time(*start), dt.time(*end))


MIDNIGHT_TO_SEVEN = hours((0, 0), (7, 0))

# One case a line: (name, at, zone, quiet hours, expected). The first seven were held until the
# next allowed stretch (6 to 7½ hours) while the clocks skipped the hour after them.
# fmt: off
SKIPPED_HOUR_CASES = [
    ("Santiago 23:30 before midnight is skipped", local(SANTIAGO, 2025, 9, 6, 23, 30), SANTIAGO, MIDNIGHT_TO_SEVEN, local(SANTIAGO, 2025, 9, 6, 23, 30)),
    ("Cairo 23:30 before midnight is skipped", local(CAIRO, 2026, 4, 23, 23, 30), CAIRO, MIDNIGHT_TO_SEVEN, local(CAIRO, 2026, 4, 23, 23, 30)),
    ("Beirut 23:30 before midnight is skipped", local(BEIRUT, 2026, 3, 28, 23, 30), BEIRUT, MIDNIGHT_TO_SEVEN, local(BEIRUT, 2026, 3, 28, 23, 30)),
    ("Havana 23:30 before midnight is skipped", local(HAVANA, 2026, 3, 7, 23, 30), HAVANA, MIDNIGHT_TO_SEVEN, local(HAVANA, 2026, 3, 7, 23, 30)),
    ("London 00:45 before 01:00-02:00 is skipped", local(LONDON, 2026, 3, 29, 0, 45), LONDON, hours((1, 30), (7, 0)), local(LONDON, 2026, 3, 29, 0, 45)),
    ("New York 01:40 before 02:00-03:00 is skipped", local(NEW_YORK, 2026, 3, 8, 1, 40), NEW_YORK, hours((2, 30), (8, 0)), local(NEW_YORK, 2026, 3, 8, 1, 40)),
    ("Sydney 01:40 before 02:00-03:00 is skipped", local(SYDNEY, 2025, 10, 5, 1, 40), SYDNEY, hours((2, 30), (8, 0)), local(SYDNEY, 2025, 10, 5, 1, 40)),
    # 03:15-02:15 leaves 02:15-03:15 allowed; on 8 March only 03:00-03:15 EDT of it happens.
    ("New York 03:05 inside the 15 minutes left", local(NEW_YORK, 2026, 3, 8, 3, 5), NEW_YORK, hours((3, 15), (2, 15)), local(NEW_YORK, 2026, 3, 8, 3, 5)),
    ("New York quiet at 01:00 waits for the 15 minutes left", local(NEW_YORK, 2026, 3, 8, 1, 0), NEW_YORK, hours((3, 15), (2, 15)), local(NEW_YORK, 2026, 3, 8, 3, 0)),
    # Quiet hours ending at a skipped wall time end when the clocks change, not an hour after.
    ("Santiago quiet until the skipped 00:30", local(SANTIAGO, 2025, 9, 6, 23, 0), SANTIAGO, hours((22, 0), (0, 30)), local(SANTIAGO, 2025, 9, 7, 1, 0)),
    ("Lord Howe quiet until the skipped 02:15", local(LORD_HOWE, 2025, 10, 5, 1, 0), LORD_HOWE, hours((22, 0), (2, 15)), local(LORD_HOWE, 2025, 10, 5, 2, 30)),
]
# fmt: on


@pytest.mark.parametrize(
    ("at", "zone", "quiet", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in SKIPPED_HOUR_CASES],
)
def test_next_to_a_skipped_hour_a_service_message_goes_at_the_first_allowed_minute(
    at: dt.datetime, zone: ZoneInfo, quiet: QuietHours, expected: dt.datetime
) -> None:
    assert next_allowed(at, zone, quiet, SERVICE, CN, POLICY) == expected
    # `expected` is that first minute: allowed, and no minute from `at` up to it is.
    assert allowed_at(expected, zone, quiet, SERVICE, CN, POLICY)
    moment = at.astimezone(dt.UTC)  # steps of real minutes, not of wall time
    while moment < expected:
        assert not allowed_at(moment, zone, quiet, SERVICE, CN, POLICY)
        moment += MINUTE


def test_quiet_hours_begun_before_the_clocks_go_back_last_until_they_end() -> None:
    # London repeats 01:00-02:00 on 25 October 2026. Quiet from 01:30 BST (the first 01:30);
    # 01:10 GMT, an hour later, reads as before 01:30 but is still quiet for the customer.
    quiet = hours((1, 30), (6, 0))
    at = dt.datetime(2026, 10, 25, 1, 10, tzinfo=dt.UTC)  # 01:10 GMT, the second 01:10
    assert next_allowed(at, LONDON, quiet, SERVICE, CN, POLICY) == local(LONDON, 2026, 10, 25, 6, 0)


# --- property: minute by minute, around every clock change of a few zones ----------------------

ZONES_WITH_CLOCK_CHANGES = [SANTIAGO, CAIRO, HAVANA, LONDON, NEW_YORK, SYDNEY, LORD_HOWE]


def _clock_changes(zone: ZoneInfo, years: range) -> list[dt.datetime]:
    """The hours (UTC) in which `zone` changes its clocks in `years`: days whose noon offsets
    differ, then the hour within them."""
    changes = []
    day = dt.datetime(years.start, 1, 1, 12, tzinfo=dt.UTC)
    while day.year < years.stop:
        following = day + dt.timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            hour = day
            while hour.astimezone(zone).utcoffset() == day.astimezone(zone).utcoffset():
                hour += dt.timedelta(hours=1)
            changes.append(hour)
        day = following
    return changes


CLOCK_CHANGES = [
    (zone, change)
    for zone in ZONES_WITH_CLOCK_CHANGES
    for change in _clock_changes(zone, range(2025, 2028))
]
HORIZON = dt.timedelta(days=3)  # a service message waits less than a day and an hour


def _occurs_twice(moment: dt.datetime, zone: ZoneInfo) -> bool:
    """Whether the local wall time of `moment` is shown twice (the hour the clocks go back)."""
    wall = moment.astimezone(zone)
    return wall.replace(fold=1 - wall.fold).astimezone(dt.UTC) != moment


minutes_of_day = st.integers(min_value=0, max_value=24 * 60 - 1)
quiet_hours = st.builds(
    lambda a, b: QuietHours(dt.time(a // 60, a % 60), dt.time(b // 60, b % 60)),
    minutes_of_day,
    minutes_of_day,
)


@settings(max_examples=300, deadline=None)
@given(
    change=st.sampled_from(CLOCK_CHANGES),
    offset=st.integers(min_value=-36 * 60, max_value=12 * 60),
    quiet=quiet_hours,
)
def test_near_a_clock_change_a_message_never_goes_in_quiet_hours_nor_after_the_first_allowed_minute_that_occurs_once(
    change: tuple[ZoneInfo, dt.datetime], offset: int, quiet: QuietHours
) -> None:
    """`next_allowed` is at or after `at`, allowed, and no later than the first allowed minute
    (from `at`, minute by minute) whose wall time the clocks do not show twice. Inside a
    repeated hour the quieter reading may hold a message longer (the test above)."""
    zone, hour = change
    at = hour + offset * MINUTE
    found = next_allowed(at, zone, quiet, SERVICE, CN, POLICY)
    assert found is not None
    assert found >= at
    assert allowed_at(found, zone, quiet, SERVICE, CN, POLICY)
    moment = at
    while moment < at + HORIZON and not (
        allowed_at(moment, zone, quiet, SERVICE, CN, POLICY) and not _occurs_twice(moment, zone)
    ):
        moment += MINUTE
    assert moment < at + HORIZON
    assert found <= moment
