"""The per-party rate limit on SendNotification requests: rolling windows counted back from now,
every window must have room, and a refusal says exactly when the next request fits: when the
oldest request the full window counts leaves it."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_notifications.domain.rate_limit import (
    DEFAULT_RATE_LIMIT,
    RateLimited,
    RateWindow,
    lookback,
    over_limit,
)

NOW = dt.datetime(2026, 3, 17, 2, 0, tzinfo=dt.UTC)
MINUTE = RateWindow(dt.timedelta(minutes=1), 10)
HOUR = RateWindow(dt.timedelta(hours=1), 60)


def seconds_ago(*offsets: float) -> list[dt.datetime]:
    return [NOW - dt.timedelta(seconds=offset) for offset in offsets]


def test_the_banks_limit_is_ten_a_minute_and_sixty_an_hour() -> None:
    assert DEFAULT_RATE_LIMIT == (MINUTE, HOUR)
    assert [str(window) for window in DEFAULT_RATE_LIMIT] == [
        "10 notifications per party per minute",
        "60 notifications per party per hour",
    ]
    assert lookback(DEFAULT_RATE_LIMIT) == dt.timedelta(hours=1)


def test_a_request_fits_while_every_window_has_room() -> None:
    nine_this_minute = seconds_ago(*range(1, 10))
    assert over_limit(DEFAULT_RATE_LIMIT, nine_this_minute, NOW) is None
    assert over_limit(DEFAULT_RATE_LIMIT, [], NOW) is None


def test_the_limit_reached_refuses_until_the_oldest_counted_request_leaves_the_window() -> None:
    # Ten in the last minute, the oldest 45 s ago: room again in 15 s.
    ten = seconds_ago(45, 40, 30, 20, 10, 5, 4, 3, 2, 1)
    assert over_limit(DEFAULT_RATE_LIMIT, ten, NOW) == RateLimited(MINUTE, dt.timedelta(seconds=15))


def test_a_request_made_exactly_a_window_ago_has_left_it() -> None:
    ten = seconds_ago(60, 40, 30, 20, 10, 5, 4, 3, 2, 1)
    assert over_limit(DEFAULT_RATE_LIMIT, ten, NOW) is None

    just_inside = seconds_ago(59.999999, 40, 30, 20, 10, 5, 4, 3, 2, 1)
    assert over_limit(DEFAULT_RATE_LIMIT, just_inside, NOW) == RateLimited(
        MINUTE, dt.timedelta(microseconds=1)
    )


def test_the_hour_holds_a_slow_steady_flood_the_minute_lets_through() -> None:
    # One every 50 s for the last 50 minutes: never more than 2 in a minute, 60 in the hour;
    # the oldest, 50 minutes ago, leaves the hour in 10 minutes.
    steady = seconds_ago(*(50 * n for n in range(1, 61)))
    assert over_limit(DEFAULT_RATE_LIMIT, steady, NOW) == RateLimited(
        HOUR, dt.timedelta(minutes=10)
    )


def test_with_two_windows_full_the_later_moment_is_given() -> None:
    # The minute is full until 30 s from now, the hour until 20 minutes from now.
    recent = seconds_ago(30, *range(1, 10))
    earlier = seconds_ago(*(2400 - n for n in range(50)))
    assert over_limit(DEFAULT_RATE_LIMIT, recent + earlier, NOW) == RateLimited(
        HOUR, dt.timedelta(minutes=20)
    )


def test_over_a_lowered_limit_the_wait_is_until_the_window_holds_one_fewer_than_it() -> None:
    # Twelve in the last minute (before the limit went down to 10): three must leave.
    twelve = seconds_ago(55, 50, 45, 40, 35, 30, 25, 20, 15, 10, 5, 1)
    assert over_limit((MINUTE,), twelve, NOW) == RateLimited(MINUTE, dt.timedelta(seconds=15))


def test_a_request_stamped_after_now_counts() -> None:
    # Another replica's clock a little ahead: leaving it out would let one too many through.
    ten = [*seconds_ago(*range(1, 10)), NOW + dt.timedelta(seconds=2)]
    refused = over_limit(DEFAULT_RATE_LIMIT, ten, NOW)
    assert refused == RateLimited(MINUTE, dt.timedelta(seconds=51))


@pytest.mark.parametrize(
    ("window", "said"),
    [
        (RateWindow(dt.timedelta(seconds=30), 3), "3 notifications per party per 30 seconds"),
        (RateWindow(dt.timedelta(seconds=1), 1), "1 notifications per party per second"),
        (RateWindow(dt.timedelta(seconds=90), 5), "5 notifications per party per 90 seconds"),
        (RateWindow(dt.timedelta(minutes=5), 20), "20 notifications per party per 5 minutes"),
        (RateWindow(dt.timedelta(hours=24), 200), "200 notifications per party per 24 hours"),
    ],
)
def test_a_window_is_named_by_its_numbers(window: RateWindow, said: str) -> None:
    assert str(window) == said


@pytest.mark.parametrize(
    ("length", "limit"),
    [
        (dt.timedelta(0), 1),
        (dt.timedelta(milliseconds=1500), 1),
        (dt.timedelta(days=1, seconds=1), 1),
        (dt.timedelta(minutes=1), 0),
        (dt.timedelta(minutes=1), 10_001),
    ],
)
def test_a_window_out_of_bounds_is_refused(length: dt.timedelta, limit: int) -> None:
    with pytest.raises(ValueError, match="rate window"):
        RateWindow(length, limit)


def test_now_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        over_limit(DEFAULT_RATE_LIMIT, [], NOW.replace(tzinfo=None))


windows = st.lists(
    st.builds(
        RateWindow,
        st.integers(1, 7200).map(lambda s: dt.timedelta(seconds=s)),
        st.integers(1, 8),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda window: window.length,
)
history = st.lists(
    st.integers(-7200 * 10**6, 5 * 10**6).map(lambda us: NOW + dt.timedelta(microseconds=us)),
    max_size=30,
)


@given(windows, history)
def test_a_refusal_ends_exactly_when_a_request_fits_again(
    limit: list[RateWindow], requested: list[dt.datetime]
) -> None:
    refused = over_limit(limit, requested, NOW)
    if refused is None:
        # Room in every window, counting every request after its start.
        for window in limit:
            assert sum(at > NOW - window.length for at in requested) < window.limit
        return
    assert refused.window in limit
    assert refused.retry_after > dt.timedelta(0)
    # Nothing is stored while refused, so the same requests are what counts later.
    later = NOW + refused.retry_after
    assert over_limit(limit, requested, later) is None
    assert over_limit(limit, requested, later - dt.timedelta(microseconds=1)) is not None
