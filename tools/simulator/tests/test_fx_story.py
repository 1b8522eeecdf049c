"""`zhike fx-story` says why a marketing SMS was deferred, by `make run`'s rules."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from zhike_simulator.fx_story import why_deferred

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI)  # 2 March 2026: a Monday


def test_late_on_a_weekday_is_quiet_hours() -> None:
    assert why_deferred(at(3, 22, 30), at(4, 9)).startswith(
        "it is 22:30, inside the default quiet hours (21:00-08:00)"
    )


def test_an_evening_hour_is_outside_the_marketing_window() -> None:
    assert why_deferred(at(3, 20, 15), at(4, 9)).startswith(
        "it is 20:15, outside the marketing window (09:00-20:00)"
    )


def test_mid_day_on_a_saturday_is_a_rest_day() -> None:
    assert why_deferred(at(7, 11), at(9, 9)).startswith("today (Saturday) is a rest day")


def test_mid_day_on_a_weekday_held_to_another_day_is_a_holiday() -> None:
    assert "is not a working day (a public holiday)" in why_deferred(at(4, 11), at(5, 9))
