"""The per-party rate limit on SendNotification requests (pure).

A caller may ask for at most `limit` notifications for one party in any `length` of time, for
each configured window (rolling: counted back from now). What counts is every request stored
for the party: accepted, whatever became of it since (a marketing one SUPPRESSED by the cap
was still a request), of any category and channel. A refused request is not stored, so it does
not count, and a caller retrying after the delay it was given is not held back by its own
refusals. Offers' decisions are not requests: the frequency cap and offers' contact budget
bound them.

Over the limit, the answer says when to try again: when the oldest request the full window
counts leaves it (the window then holds one fewer than its limit); with several windows full,
the latest of those moments, since the request needs room in every one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_WINDOW = dt.timedelta(days=1)
MAX_LIMIT = 10_000

_UNITS = (
    (dt.timedelta(hours=1), "hour"),
    (dt.timedelta(minutes=1), "minute"),
    (dt.timedelta(seconds=1), "second"),
)


@dataclass(frozen=True)
class RateWindow:
    """At most `limit` requests for one party in any `length` of time."""

    length: dt.timedelta
    limit: int

    def __post_init__(self) -> None:
        if not dt.timedelta(seconds=1) <= self.length <= MAX_WINDOW:
            raise ValueError("a rate window is from 1 second to 1 day long")
        if self.length % dt.timedelta(seconds=1):
            raise ValueError("a rate window is a whole number of seconds")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"a rate window's limit is from 1 to {MAX_LIMIT}")

    def __str__(self) -> str:
        """ "10 notifications per party per minute", "3 … per 30 seconds": what the caller is
        told it is over (numbers only, never whose request it was)."""
        for unit, name in _UNITS:
            if self.length % unit == dt.timedelta(0):
                count = self.length // unit
                per = name if count == 1 else f"{count} {name}s"
                return f"{self.limit} notifications per party per {per}"
        raise AssertionError("a window is a whole number of seconds")  # __post_init__


# The bank's: a burst of card-transaction alerts (a day's shopping, a run of declined tries)
# fits in 10 a minute; a flood of one-time passcodes does not get past 10 a minute or 60 an
# hour (services/notifications/README.md, "Rate limit").
DEFAULT_RATE_LIMIT = (
    RateWindow(dt.timedelta(minutes=1), 10),
    RateWindow(dt.timedelta(hours=1), 60),
)


@dataclass(frozen=True)
class RateLimited:
    """The request is refused: `window` is full until `retry_after` from now."""

    window: RateWindow
    retry_after: dt.timedelta


def lookback(windows: Sequence[RateWindow]) -> dt.timedelta:
    """How far back the requests must be read: the longest window."""
    return max((window.length for window in windows), default=dt.timedelta(0))


def over_limit(
    windows: Sequence[RateWindow], requested: Iterable[dt.datetime], now: dt.datetime
) -> RateLimited | None:
    """None when one more request for the party fits every window; else the window that holds
    it back longest and for how long. `requested`: when each stored request was made, from at
    least `lookback(windows)` ago. A time after `now` counts (another replica's clock a little
    ahead): leaving it out would let one request too many through."""
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    times = sorted(requested)
    refusal: RateLimited | None = None
    for window in windows:
        # A request made exactly `length` ago has left the window.
        counted = [at for at in times if at > now - window.length]
        if len(counted) < window.limit:
            continue
        # Room for one comes when all but limit - 1 of those counted have left.
        frees = counted[len(counted) - window.limit] + window.length
        retry_after = frees - now
        if refusal is None or retry_after > refusal.retry_after:
            refusal = RateLimited(window, retry_after)
    return refusal
