"""What tests and benchmarks of notifications need to run whatever the day and hour: a calendar
in which every day is a working day, and a time zone in which it is now mid-day (so marketing
goes out at once, inside the marketing window and outside the default quiet hours)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from zhike_notifications.domain.service import REQUEST_DIGEST_PURPOSE
from zhike_runtime.testing.services import fixed_field_keys

# The request digest as a service with the tests' field keys computes it.
REQUEST_DIGEST = fixed_field_keys().blind_index.purpose(REQUEST_DIGEST_PURPOSE)


def every_day_working(first_year: int, last_year: int) -> str:
    """A calendar file's text (calendars/cn.yaml's format) in which every day of these years is
    a working day: no holidays, every Saturday and Sunday a make-up working day."""
    lines = ["years:"]
    for year in range(first_year, last_year + 1):
        lines += [f"  {year}:", "    holidays: []", "    working_days:"]
        day = dt.date(year, 1, 1)
        while day.year == year:
            if day.weekday() >= 5:
                lines.append(f"      - {{date: {day.isoformat()}, for: every day}}")
            day += dt.timedelta(days=1)
    return "\n".join(lines) + "\n"


def every_day_working_calendar(path: Path, today: dt.date | None = None) -> Path:
    """Writes `every_day_working` for last year to next year at `path`; returns the path."""
    year = (today or dt.date.today()).year
    path.write_text(every_day_working(year - 1, year + 1), encoding="utf-8")
    return path


def midday_zone(hour: int = 14, now: dt.datetime | None = None) -> str:
    """An IANA zone ("Etc/GMT±N") in which it is now `hour` o'clock and some minutes."""
    utc_hour = (now or dt.datetime.now(dt.UTC)).hour
    offset = hour - utc_hour  # from -9 to +14 for the default: every one an Etc zone
    if offset == 0:
        return "Etc/GMT"
    # Etc zones' signs are POSIX's: Etc/GMT-8 is eight hours ahead of UTC.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
