"""When a message may go out: quiet hours defer across midnight, marketing waits for a working
day's window (weekends, public holidays, make-up working days), all in the customer's zone —
also on the days a zone changes its clocks."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.calendar import WorkingCalendar, parse_calendar
from zhike_notifications.domain.model import Category
from zhike_notifications.domain.quiet_hours import (
    QuietHours,
    SendWindowPolicy,
    allowed_at,
    next_allowed,
    time_zone,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
CN = load_calendar()
POLICY = SendWindowPolicy()  # marketing 09:00–20:00 on working days
NIGHT = QuietHours(dt.time(22, 0), dt.time(7, 0))
MARKETING, SERVICE, TRANSACTIONAL = Category.MARKETING, Category.SERVICE, Category.TRANSACTIONAL

# Test calendars where the Sundays London changes its clocks on in 2026 are make-up working
# days (no real one is: China's make-up days never fell on them), so the marketing window can be
# seen on those days.
DST_SUNDAYS = parse_calendar(
    {
        "years": {
            2026: {
                "working_days": [
                    {"date": "2026-03-29", "for": "test"},
                    {"date": "2026-10-25", "for": "test"},
                ]
            }
        }
    }
)


def sh(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def hours(start: tuple[int, int], end: tuple[int, int]) -> QuietHours:
    return QuietHours(dt.time(*start), dt.time(*end))


# One case a line: (name, at, zone, quiet hours, category, calendar, expected).
# fmt: off
CASES = [
    ("service at night waits past midnight", sh(2026, 3, 10, 23, 30), SHANGHAI, NIGHT, SERVICE, CN, sh(2026, 3, 11, 7, 0)),
    ("service just before the quiet hours end", sh(2026, 3, 11, 6, 59), SHANGHAI, NIGHT, SERVICE, CN, sh(2026, 3, 11, 7, 0)),
    ("service in the day goes at once", sh(2026, 3, 11, 12, 0), SHANGHAI, NIGHT, SERVICE, CN, sh(2026, 3, 11, 12, 0)),
    ("service at the quiet hours' first minute", sh(2026, 3, 11, 22, 0), SHANGHAI, NIGHT, SERVICE, CN, sh(2026, 3, 12, 7, 0)),
    ("service one second before quiet hours", sh(2026, 3, 11, 21, 59, 59), SHANGHAI, NIGHT, SERVICE, CN, sh(2026, 3, 11, 21, 59, 59)),
    ("service on a holiday is not held", sh(2026, 10, 1, 10, 0), SHANGHAI, NIGHT, SERVICE, CN, sh(2026, 10, 1, 10, 0)),
    ("no quiet hours when start equals end", sh(2026, 3, 11, 3, 0), SHANGHAI, hours((0, 0), (0, 0)), SERVICE, CN, sh(2026, 3, 11, 3, 0)),
    ("transactional goes at 03:00", sh(2026, 10, 1, 3, 0), SHANGHAI, NIGHT, TRANSACTIONAL, CN, sh(2026, 10, 1, 3, 0)),
    ("marketing inside the window on a Friday", sh(2026, 3, 13, 19, 30), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 3, 13, 19, 30)),
    ("marketing after the window waits past the weekend", sh(2026, 3, 13, 20, 0), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 3, 16, 9, 0)),
    ("marketing on a Saturday waits for Monday", sh(2026, 3, 14, 10, 0), SHANGHAI, None, MARKETING, CN, sh(2026, 3, 16, 9, 0)),
    ("marketing before the window", sh(2026, 3, 16, 7, 15), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 3, 16, 9, 0)),
    ("marketing on the eve of 国庆 2026 waits for 8 October", sh(2026, 9, 30, 20, 30), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 10, 8, 9, 0)),
    ("marketing during 国庆 2026 waits for 8 October", sh(2026, 10, 3, 11, 0), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 10, 8, 9, 0)),
    ("marketing on a make-up Sunday (20 Sep 2026)", sh(2026, 9, 20, 8, 0), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 9, 20, 9, 0)),
    ("marketing from a Saturday to the make-up Sunday", sh(2026, 9, 19, 12, 0), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 9, 20, 9, 0)),
    ("marketing on a make-up Saturday (10 Oct 2026)", sh(2026, 10, 10, 10, 0), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 10, 10, 10, 0)),
    ("marketing before 春节 2026 goes on its make-up Saturday", sh(2026, 2, 13, 20, 30), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 2, 14, 9, 0)),
    ("marketing during 春节 2026 waits for 24 February", sh(2026, 2, 16, 10, 0), SHANGHAI, NIGHT, MARKETING, CN, sh(2026, 2, 24, 9, 0)),
    ("marketing and daytime quiet hours", sh(2026, 3, 16, 12, 30), SHANGHAI, hours((12, 0), (14, 0)), MARKETING, CN, sh(2026, 3, 16, 14, 0)),
    ("marketing before evening quiet hours", sh(2026, 3, 16, 18, 30), SHANGHAI, hours((19, 0), (9, 30)), MARKETING, CN, sh(2026, 3, 16, 18, 30)),
    ("marketing and quiet hours past the window's start", sh(2026, 3, 17, 9, 0), SHANGHAI, hours((19, 0), (9, 30)), MARKETING, CN, sh(2026, 3, 17, 9, 30)),
    ("marketing cut by evening quiet hours", sh(2026, 3, 16, 19, 15), SHANGHAI, hours((19, 0), (9, 30)), MARKETING, CN, sh(2026, 3, 17, 9, 30)),
    # Europe/London springs forward on Sunday 29 March 2026 (01:00 GMT → 02:00 BST) and falls
    # back on Sunday 25 October 2026 (02:00 BST → 01:00 GMT).
    ("London night across the spring change", utc(2026, 3, 28, 23, 0), LONDON, NIGHT, SERVICE, CN, utc(2026, 3, 29, 6, 0)),
    ("London night across the autumn change", utc(2026, 10, 24, 22, 0), LONDON, NIGHT, SERVICE, CN, utc(2026, 10, 25, 7, 0)),
    ("London window on the spring change day", utc(2026, 3, 29, 7, 30), LONDON, NIGHT, MARKETING, DST_SUNDAYS, utc(2026, 3, 29, 8, 0)),
    ("London window on the day before the spring change", utc(2026, 3, 27, 8, 30), LONDON, NIGHT, MARKETING, DST_SUNDAYS, utc(2026, 3, 27, 9, 0)),
    ("London window's end on the spring change day", utc(2026, 3, 29, 19, 30), LONDON, NIGHT, MARKETING, DST_SUNDAYS, utc(2026, 3, 30, 8, 0)),
    ("London window on the autumn change day", utc(2026, 10, 25, 7, 0), LONDON, NIGHT, MARKETING, DST_SUNDAYS, utc(2026, 10, 25, 9, 0)),
    ("London just before the window's end on the autumn change day", utc(2026, 10, 25, 19, 59), LONDON, NIGHT, MARKETING, DST_SUNDAYS, utc(2026, 10, 25, 19, 59)),
    # A quiet-hours end the clocks skip (01:30 does not exist on 29 March): when they skip it,
    # 01:00 GMT → 02:00 BST; from then the clock reads past 01:30.
    ("London quiet hours ending in the skipped hour", utc(2026, 3, 29, 0, 30), LONDON, hours((22, 0), (1, 30)), SERVICE, CN, utc(2026, 3, 29, 1, 0)),
    # 01:30 happens twice on 25 October: quiet hours starting then start at the first one.
    ("London quiet hours starting in the repeated hour", utc(2026, 10, 25, 0, 10), LONDON, hours((1, 30), (6, 0)), SERVICE, CN, utc(2026, 10, 25, 0, 10)),
    ("London inside quiet hours begun in the repeated hour", utc(2026, 10, 25, 0, 40), LONDON, hours((1, 30), (6, 0)), SERVICE, CN, utc(2026, 10, 25, 6, 0)),
    # New York: a Shanghai-calendar working day, in New York's own window.
    ("New York customer on his Monday morning", utc(2026, 3, 16, 12, 0), NEW_YORK, NIGHT, MARKETING, CN, utc(2026, 3, 16, 13, 0)),
]
# fmt: on


@pytest.mark.parametrize(
    ("at", "zone", "quiet", "category", "calendar", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_next_allowed(
    at: dt.datetime,
    zone: ZoneInfo,
    quiet: QuietHours | None,
    category: Category,
    calendar: WorkingCalendar,
    expected: dt.datetime,
) -> None:
    found = next_allowed(at, zone, quiet, category, calendar, POLICY)
    assert found == expected
    assert found is not None
    assert found.tzinfo is at.tzinfo  # answered in the caller's zone
    assert allowed_at(found, zone, quiet, category, calendar, POLICY)


def test_quiet_hours_covering_the_marketing_window_leave_no_time() -> None:
    quiet = hours((8, 0), (21, 0))
    assert next_allowed(sh(2026, 3, 16, 10, 0), SHANGHAI, quiet, MARKETING, CN, POLICY) is None
    # A service message still goes, after them.
    assert next_allowed(sh(2026, 3, 16, 10, 0), SHANGHAI, quiet, SERVICE, CN, POLICY) == sh(
        2026, 3, 16, 21, 0
    )


def test_the_marketing_window_is_configurable() -> None:
    early = SendWindowPolicy(marketing_start=dt.time(8, 0), marketing_end=dt.time(12, 0))
    at = sh(2026, 3, 16, 12, 0)
    assert next_allowed(at, SHANGHAI, None, MARKETING, CN, early) == sh(2026, 3, 17, 8, 0)


def test_a_year_beyond_the_calendar_still_defers_by_weekday() -> None:
    # 1 January 2027 is a Friday the file does not know yet: treated as a working day.
    at = sh(2026, 12, 31, 20, 30)
    assert next_allowed(at, SHANGHAI, NIGHT, MARKETING, CN, POLICY) == sh(2027, 1, 1, 9, 0)


def test_policies_that_make_no_sense_are_refused() -> None:
    with pytest.raises(ValueError, match="marketing_start"):
        SendWindowPolicy(marketing_start=dt.time(20, 0), marketing_end=dt.time(9, 0))
    with pytest.raises(ValueError, match="time zone"):
        next_allowed(dt.datetime(2026, 3, 16, 10), SHANGHAI, None, SERVICE, CN, POLICY)


def test_an_unknown_zone_falls_back_to_the_banks() -> None:
    assert time_zone("Mars/Olympus_Mons", "Asia/Shanghai") == SHANGHAI
    assert time_zone("", "Asia/Shanghai") == SHANGHAI
    assert time_zone("Europe/London", "Asia/Shanghai") == LONDON
    with pytest.raises(ValueError, match="default time zone"):
        time_zone("", "Nowhere/Else")


# --- properties ------------------------------------------------------------------------------

minutes = st.integers(min_value=0, max_value=24 * 60 - 1)
quiet_hours = st.one_of(
    st.none(),
    st.builds(
        lambda a, b: QuietHours(dt.time(a // 60, a % 60), dt.time(b // 60, b % 60)),
        minutes,
        minutes,
    ),
)
moments = st.datetimes(
    min_value=dt.datetime(2025, 1, 1),
    max_value=dt.datetime(2027, 12, 31),
    timezones=st.just(dt.UTC),
).map(lambda moment: moment.replace(second=0, microsecond=0))


@settings(max_examples=300, deadline=None)
@given(
    at=moments,
    zone=st.sampled_from([SHANGHAI, LONDON, NEW_YORK]),
    quiet=quiet_hours,
    category=st.sampled_from(list(Category)),
)
def test_the_answer_is_never_early_and_always_allowed(
    at: dt.datetime, zone: ZoneInfo, quiet: QuietHours | None, category: Category
) -> None:
    found = next_allowed(at, zone, quiet, category, CN, POLICY)
    if found is None:
        # Only when the quiet hours leave nothing of the marketing window.
        assert category is MARKETING
        assert quiet is not None
        day = dt.date(2026, 3, 16)
        assert not any(
            allowed_at(
                dt.datetime.combine(day, dt.time(h, m), tzinfo=SHANGHAI),
                SHANGHAI,
                quiet,
                MARKETING,
                CN,
                POLICY,
            )
            for h in range(24)
            for m in range(60)
        )
        return
    assert found >= at
    assert allowed_at(found, zone, quiet, category, CN, POLICY)


@settings(max_examples=200, deadline=None)
@given(at=moments, quiet=quiet_hours)
def test_a_service_message_goes_at_the_first_allowed_minute(
    at: dt.datetime, quiet: QuietHours | None
) -> None:
    """Without clock changes (Shanghai) the answer is the earliest: no minute before it, from
    `at`, is allowed."""
    found = next_allowed(at, SHANGHAI, quiet, SERVICE, CN, POLICY)
    assert found is not None
    moment = at
    while moment < found:
        assert not allowed_at(moment, SHANGHAI, quiet, SERVICE, CN, POLICY)
        moment += dt.timedelta(minutes=1)


@settings(max_examples=200, deadline=None)
@given(at=moments, quiet=quiet_hours)
def test_a_marketing_message_goes_at_the_start_of_an_allowed_stretch(
    at: dt.datetime, quiet: QuietHours | None
) -> None:
    found = next_allowed(at, SHANGHAI, quiet, MARKETING, CN, POLICY)
    if found is None or found == at:
        return
    # Deferred: the minute before it is not allowed, so nothing earlier was skipped over there.
    before = found - dt.timedelta(minutes=1)
    assert not allowed_at(before, SHANGHAI, quiet, MARKETING, CN, POLICY)
