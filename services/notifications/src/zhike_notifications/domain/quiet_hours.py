"""When a message may go out: quiet hours that defer, never drop (pure).

- TRANSACTIONAL (a one-time passcode, a fraud alert): at once.
- SERVICE: at the first moment outside the customer's quiet hours.
- MARKETING: at the first moment of a working day (the calendar: holidays, weekends, make-up
  working days) inside the policy's daytime window, and outside the customer's quiet hours.

Everything is in the customer's local wall time: the window, the quiet hours and which day it
is. On days a zone changes its clocks, an allowed stretch that starts or ends at a wall time the
clocks skip (spring forward) starts or ends at the instant they skip it. At a wall time they show
twice (fall back) it starts at the later reading and ends at the earlier one, which keeps the
message quieter: quiet hours begun at the first 01:30 last to their end, though the clock shows
01:00–01:30 again. So nothing ever goes out in quiet hours, and a message goes out at the first
moment its wall time allows — except that moments in an hour the clocks repeat may be passed
over, and it then goes out no later than the first allowed moment whose wall time occurs once.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from zhike_notifications.domain.calendar import WorkingCalendar
from zhike_notifications.domain.model import Category
from zhike_runtime.validation import iana_zone

MIDNIGHT = dt.time(0, 0)


@dataclass(frozen=True)
class QuietHours:
    """The customer's quiet hours, [start, end) in local time; start > end crosses midnight
    (22:00–07:00). start == end means no quiet hours at all (never a whole day of silence)."""

    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall times, without a time zone")

    def contains(self, wall: dt.time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end  # across midnight

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


@dataclass(frozen=True)
class SendWindowPolicy:
    # Marketing goes out only on working days, in [start, end) local time; never across midnight.
    marketing_start: dt.time = dt.time(9, 0)
    marketing_end: dt.time = dt.time(20, 0)
    # How far ahead to look for an allowed moment before giving up (the longest run of rest days
    # in China is 9; a year covers any quiet hours that leave some time).
    horizon_days: int = 400

    def __post_init__(self) -> None:
        if not self.marketing_start < self.marketing_end:
            raise ValueError("marketing_start must be before marketing_end (no midnight crossing)")
        if self.marketing_start.tzinfo is not None or self.marketing_end.tzinfo is not None:
            raise ValueError("the marketing window is in local wall time, without a time zone")
        if not 7 <= self.horizon_days <= 3660:
            raise ValueError("horizon_days must be from 7 to 3660")

    @property
    def marketing_window(self) -> str:
        return f"{self.marketing_start:%H:%M}–{self.marketing_end:%H:%M}"


def next_allowed(
    at: dt.datetime,
    customer_tz: dt.tzinfo,
    quiet_hours: QuietHours | None,
    category: Category,
    calendar: WorkingCalendar,
    policy: SendWindowPolicy,
) -> dt.datetime | None:
    """The first moment at or after `at` when a message of `category` may go out (in `at`'s
    time zone), or None when there is none within the policy's horizon — which happens only
    when the quiet hours cover the whole marketing window: the gates then suppress the message
    (NO_SEND_WINDOW) rather than defer it forever."""
    if at.tzinfo is None:
        raise ValueError("at must carry a time zone")
    if category is Category.TRANSACTIONAL:
        return at
    day = at.astimezone(customer_tz).date()
    for _ in range(policy.horizon_days + 1):
        if category is Category.MARKETING and not calendar.is_working_day(day):
            day += dt.timedelta(days=1)
            continue
        for first, last in _allowed_stretches(category, quiet_hours, policy):
            start = _instant(day, first, customer_tz, later=True)
            if last is None:
                end = _next_midnight(day, customer_tz)
            else:
                end = _instant(day, last, customer_tz, later=False)
            moment = max(at, start)
            if moment < end:
                return moment.astimezone(at.tzinfo)
        day += dt.timedelta(days=1)
    return None


def allowed_at(
    moment: dt.datetime,
    customer_tz: dt.tzinfo,
    quiet_hours: QuietHours | None,
    category: Category,
    calendar: WorkingCalendar,
    policy: SendWindowPolicy,
) -> bool:
    """Whether `moment` itself is allowed, by its local wall time (what the tests check every
    answer of `next_allowed` against)."""
    if category is Category.TRANSACTIONAL:
        return True
    local = moment.astimezone(customer_tz)
    wall = local.time().replace(tzinfo=None)
    if quiet_hours is not None and quiet_hours.contains(wall):
        return False
    if category is Category.MARKETING:
        return (
            calendar.is_working_day(local.date())
            and policy.marketing_start <= wall < policy.marketing_end
        )
    return True


def time_zone(name: str, default: str) -> zoneinfo.ZoneInfo:
    """The customer's zone by IANA name; `default` (the bank's) when none is set or it is not a
    known zone (a bad preference must not stop a message, it falls back to the bank's hours)."""
    for candidate in (name, default):
        zone = iana_zone(candidate) if candidate else None
        if zone is not None:
            return zone
    raise ValueError(f"default time zone {default!r} is not a known IANA zone")


def _allowed_stretches(
    category: Category, quiet_hours: QuietHours | None, policy: SendWindowPolicy
) -> list[tuple[dt.time, dt.time | None]]:
    """The day's allowed stretches [first, last) in wall time, in order; last None = midnight."""
    if category is Category.MARKETING:
        stretches: list[tuple[dt.time, dt.time | None]] = [
            (policy.marketing_start, policy.marketing_end)
        ]
    else:
        stretches = [(MIDNIGHT, None)]
    if quiet_hours is None or quiet_hours.start == quiet_hours.end:
        return stretches
    quiet: list[tuple[dt.time, dt.time | None]]
    if quiet_hours.start < quiet_hours.end:
        quiet = [(quiet_hours.start, quiet_hours.end)]
    else:  # across midnight: the morning's end of it and the evening's start
        quiet = [(MIDNIGHT, quiet_hours.end), (quiet_hours.start, None)]
    for q_start, q_end in quiet:
        stretches = [piece for stretch in stretches for piece in _minus(stretch, q_start, q_end)]
    return stretches


def _minus(
    stretch: tuple[dt.time, dt.time | None], q_start: dt.time, q_end: dt.time | None
) -> list[tuple[dt.time, dt.time | None]]:
    """`stretch` without [q_start, q_end); None stands for the day's end (24:00)."""
    start, end = stretch
    pieces: list[tuple[dt.time, dt.time | None]] = []
    if start < q_start:
        left_end = q_start if end is None or q_start < end else end
        pieces.append((start, left_end))
    if q_end is not None and (end is None or q_end < end):
        pieces.append((max(start, q_end), end))
    return [(a, b) for a, b in pieces if b is None or a < b]


def _instant(day: dt.date, wall: dt.time, zone: dt.tzinfo, *, later: bool) -> dt.datetime:
    """The instant of a local wall time: for one the clocks show twice (fall back), the later or
    the earlier of its two readings; for one they skip (spring forward), the instant they skip
    it, whether it starts or ends an allowed stretch."""
    local = dt.datetime.combine(day, wall, tzinfo=zone)
    fold0, fold1 = local.astimezone(dt.UTC), local.replace(fold=1).astimezone(dt.UTC)  # PEP 495
    if fold0 <= fold1:  # occurs once (equal) or twice (fold 0 is the first time)
        return fold1 if later else fold0
    # Skipped: fold 0 reads it with the offset before the change and fold 1 with the one after,
    # so the change lies between their instants. Halve that span down to the microsecond.
    before, after = fold1, fold0
    offset_before = before.astimezone(zone).utcoffset()
    while after - before > dt.timedelta(microseconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).utcoffset() == offset_before:
            before = middle
        else:
            after = middle
    return after  # the first instant on the new offset


def _next_midnight(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    return _instant(day + dt.timedelta(days=1), MIDNIGHT, zone, later=False)
